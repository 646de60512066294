"""Prefect flows end to end on a tiny local site: ingest -> train -> promote, cached re-runs,
validation that fails on a regression, retrain that promotes only when better, Dask fan-out.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

WORDS = ("model data token train shard crawl page text learn batch loss value layer head "
         "attention vector weight update step small large river stone cloud light garden "
         "market winter summer village harbor forest engine signal").split()

TINY = [
    "crawl.allow_private=true", "crawl.delay_s=0.0", "crawl.autothrottle=false",
    "clean.min_chars=50", "clean.min_words=10",
    "tokenize.vocab_size=320", "tokenize.min_frequency=1", "shards.val_fraction=0.3",
    "train.n_layer=1", "train.n_head=2", "train.n_embd=32", "train.block_size=32",
    "train.batch_size=8", "train.max_steps=40", "train.warmup_steps=5", "train.lr=0.01",
    "train.min_lr=0.001", "train.eval_interval=20", "train.eval_iters=2",
    "train.save_interval=20", "train.device=cpu",
    "validate.eval_iters=4", "validate.batch_size=4", "validate.canary_docs=2",
]


def _site_routes(n_pages: int, seed: int = 0) -> dict:
    from acceptance.kit import site_routes

    return site_routes(n_pages, seed, words=220, vocabulary=WORDS)


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _task_states(flow_state) -> dict[str, str]:
    """Task name -> state name of one flow run, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id])))
    return {run.name.rsplit("-", 1)[0]: run.state.name for run in runs}


def test_ingest_then_train_promotes_and_a_second_ingest_is_cached(harness, tmp_path: Path):
    from crawler.localsite import LocalSite
    from flows.ingest import ingest_flow
    from flows.registry import Registry
    from flows.train import train_flow
    from pipeline.layout import DataRoot
    from pipeline.shards import read_manifest

    root = DataRoot.at(tmp_path / "data")
    with LocalSite(_site_routes(12)) as site:
        first = ingest_flow(root=str(root.path), overrides=TINY, urls=[site.url("/")])
        state = ingest_flow(root=str(root.path), overrides=TINY, urls=[site.url("/")],
                            return_state=True)
    second = state.result()
    assert first["crawl"]["kept"] == 13 and first["extract"]["kept"] == 13
    assert first["tokenize"]["kept"] >= 10
    # nothing new: the crawl re-checks (conditional requests), extract/tokenize come from cache
    assert second["crawl"]["kept"] == 0
    # ... and say so: their figures are the first run's
    assert second["extract"] == first["extract"] | {"cached": True}
    assert second["tokenize"] == first["tokenize"] | {"cached": True}
    assert "cached" not in first["extract"] and "cached" not in second["crawl"]
    states = _task_states(state)
    assert states["extract"] == "Cached" and states["tokenize"] == "Cached"
    assert states["crawl"] == "Completed"

    manifest = read_manifest(root.manifest)
    assert manifest.totals()["val"]["docs"] >= 2

    result = train_flow(root=str(root.path), overrides=TINY)
    decision = result["decision"]
    assert decision["promoted"] and decision["reason"] == "no model promoted yet"
    registry = Registry(root)
    current = registry.current()
    assert current is not None and current.id == decision["model_id"]
    assert registry.checkpoint(current).is_file()
    assert (root.models / current.id / "model.safetensors").is_file()
    assert registry.has_canary() and current.canary_loss is not None
    assert [d["promoted"] for d in registry.decisions()] == [True]


def _weaken(checkpoint: Path, scale: float) -> None:
    import torch

    state = torch.load(checkpoint, weights_only=True)
    gen = torch.Generator().manual_seed(0)
    for tensor in state["model"].values():
        if tensor.is_floating_point() and tensor.dim() >= 2:
            tensor.add_(torch.randn(tensor.shape, generator=gen) * scale)
    torch.save(state, checkpoint)


def test_validate_and_retrain_decisions(harness, tmp_path: Path):
    from crawler.localsite import LocalSite
    from flows.common import RETRAIN_LOCK
    from flows.ingest import ingest_flow
    from flows.registry import Registry
    from flows.retrain import retrain_flow
    from flows.train import train_flow
    from flows.validate import RegressionError, validate_flow
    from pipeline.layout import DataRoot
    from pipeline.lock import stage_lock

    root = DataRoot.at(tmp_path / "data")
    config = tmp_path / "cllm.toml"
    with LocalSite(_site_routes(10, seed=1)) as site:
        config.write_text(f'[sources]\nurls = ["{site.url("/")}"]\n')
        ingest_flow(root=str(root.path), overrides=TINY, urls=[site.url("/")])
        # a weak first model (2 steps), so that a proper retrain can beat it
        train_flow(root=str(root.path), overrides=[*TINY, "train.max_steps=2", "train.run=weak"])
        registry = Registry(root)
        weak = registry.current()
        assert weak is not None

        ok = validate_flow(root=str(root.path), overrides=TINY)
        assert ok["validated"] and ok["ok"]
        assert ok["val_ppl"] == pytest.approx(math.exp(ok["val_loss"]))
        assert 0 < ok["val_bpb"] < ok["val_loss"] and 0 < ok["canary_bpb"] < ok["canary_loss"]
        assert weak.val_bpb is not None and registry.validations()[-1]["val_bpb"] == ok["val_bpb"]

        # nothing new on the site: no retrain, and the reason is recorded
        skipped = retrain_flow(root=str(root.path), config=str(config),
                               overrides=[*TINY, "schedule.min_new_docs=3"])
        assert skipped["retrained"] is False
        assert "0 new documents < schedule.min_new_docs=3" in skipped["reason"]

        # new pages arrive: retrain from the promoted model, better, promoted
        site.routes.update({k: v for k, v in _site_routes(16, seed=1).items()})
        # ... but not while another retrain holds the data root: this one is skipped, and
        # leaves the new pages to the next
        # (and a validate then is skipped too: the retrain validates what it promotes)
        decided, validated = registry.decisions(), registry.validations()
        with stage_lock(root.state, RETRAIN_LOCK):
            overlapped = retrain_flow(root=str(root.path), config=str(config), overrides=TINY)
            meanwhile = validate_flow(root=str(root.path), overrides=TINY)
        assert overlapped["retrained"] is False and overlapped["skipped"]
        assert f"already running on {root.state}" in overlapped["reason"]
        assert meanwhile["validated"] is False and meanwhile["skipped"]
        assert f"a retrain is running on {root.path}" in meanwhile["reason"]
        assert registry.decisions() == decided and registry.validations() == validated
        better = retrain_flow(root=str(root.path), config=str(config),
                              overrides=[*TINY, "schedule.min_new_docs=3", "train.max_steps=60"])
        assert better["retrained"] and better["new_documents"] >= 3
        assert better["decision"]["promoted"], better["decision"]
        assert registry.current().id != weak.id

        # more pages, but a retrain from scratch for 1 step is worse: refused, with the reason
        site.routes.update({k: v for k, v in _site_routes(20, seed=1).items()})
        worse = retrain_flow(root=str(root.path), config=str(config),
                             overrides=[*TINY, "schedule.min_new_docs=3", "train.max_steps=1",
                                        "schedule.retrain_from=scratch"])
    assert worse["retrained"] and not worse["decision"]["promoted"]
    assert ">= promoted" in worse["decision"]["reason"]
    assert registry.current().id == better["decision"]["model_id"]
    assert [d["promoted"] for d in registry.decisions()] == [True, False, True, False]

    # an injected regression: the promoted weights are damaged; validate fails visibly
    _weaken(registry.checkpoint(registry.current()), scale=0.5)
    state = validate_flow(root=str(root.path), overrides=TINY, return_state=True)
    assert state.is_failed()
    with pytest.raises(RegressionError, match="regressed"):
        state.result()
    history = registry.validations()
    assert history[-1]["ok"] is False and history[-1]["problems"]
    assert json.loads(json.dumps(history))  # plain JSON rows


def test_dask_runner_fans_extraction_out_over_two_workers(harness, tmp_path: Path):
    from crawler.localsite import LocalSite
    from docproc.extract import extract_all
    from flows.common import resolve
    from flows.ingest import ingest_flow
    from flows.runners import task_runner_for
    from pipeline.docstore import document_ids, iter_documents, list_parts
    from pipeline.layout import DataRoot
    from pipeline.tokenization import tokenize_dataset

    overrides = [*TINY, "flows.task_runner=dask", "flows.dask_workers=2"]
    cfg, root = resolve(str(tmp_path / "data"), None, overrides)
    with LocalSite(_site_routes(8, seed=2)) as site:
        flow = ingest_flow.with_options(task_runner=task_runner_for(cfg))
        result = flow(root=str(root.path), overrides=overrides, urls=[site.url("/")])
    assert result["extract"]["partitions"] == 2
    assert result["extract"]["kept"] == 9
    assert len(document_ids(root.docs)) == 9
    # each extraction task wrote its own part; the encode tasks spooled both, so the final
    # tokenize step found every part encoded already
    assert len(list_parts(root.docs)) == 2
    assert result["tokenize"]["extra"]["parts_resumed"] == 2
    # one process doing the same work gets the same documents, and from the same document
    # parts the same shards, byte for byte (encoding was spread over two Dask workers)
    single = DataRoot.at(tmp_path / "single")
    shutil.copytree(root.raw, single.raw)
    extract_all(cfg, single, progress=False)
    texts = {d.id: d.text for d in iter_documents(single.docs)}
    assert texts == {d.id: d.text for d in iter_documents(root.docs)}
    shutil.rmtree(single.docs)
    shutil.copytree(root.docs, single.docs)
    tokenize_dataset(cfg, single, progress=False)
    shards = sorted(p.name for p in root.shards.glob("*.bin"))
    assert shards and shards == sorted(p.name for p in single.shards.glob("*.bin"))
    for shard in shards:
        assert (root.shards / shard).read_bytes() == (single.shards / shard).read_bytes()


def test_the_training_summary_reads_the_last_training_loss(tmp_path: Path) -> None:
    """The last metrics row is an evaluation (no loss): the summary must not say `nan`."""
    from flows.train import Decision, summary_markdown

    metrics = tmp_path / "metrics.jsonl"
    rows = [{"step": 1, "loss": 9.0198}, {"step": 2, "loss": 7.5},
            {"step": 2, "event": "final_eval", "val_loss": 7.7}]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    trained = {"run_dir": str(tmp_path / "r"), "steps": 2, "tokens_seen": 10,
               "stop_reason": "max_steps", "best_val_loss": 7.7, "metrics": str(metrics)}
    decision = Decision(promoted=True, reason="no model promoted yet", candidate="c.pt",
                        candidate_val_loss=7.7, step=2)
    text = summary_markdown(trained, decision)
    assert "train loss: 9.0198 -> 7.5000" in text and "nan" not in text
    assert "Candidate (step 2)" in text


def test_the_gate_compares_loss_on_one_tokenizer_and_bits_per_byte_across_two(
        harness, tmp_path: Path) -> None:
    from flows.registry import Registry
    from flows.train import decide_and_promote
    from model.evaluate import evaluate_texts, val_texts
    from model.tiny import corpus, make_shards, tiny_config
    from model.train import train
    from pipeline.layout import DataRoot

    root = DataRoot.at(tmp_path / "data")
    make_shards(root, corpus(docs=50))
    cfg = tiny_config(max_steps=40, lr=1e-2, min_lr=1e-3, eval_interval=20)

    def trained(run: str, steps: int) -> Path:
        result = train(tiny_config(run=run, max_steps=steps, lr=1e-2, min_lr=1e-3,
                                   eval_interval=steps), root, progress=False)
        return result.best_checkpoint

    first = decide_and_promote(cfg, root, trained("a", 40), "a")
    assert first.promoted and first.metric == "none"
    budget = cfg.validate.eval_iters * cfg.validate.batch_size * 32
    on_text = evaluate_texts(root.run("a") / "best.pt", val_texts(root, budget))
    # the same model, on whole val documents or on the val windows: about the same bits
    assert on_text.bits_per_byte == pytest.approx(first.candidate_bpb, rel=0.05)
    same = decide_and_promote(cfg, root, trained("b", 10), "b")  # fewer steps: worse
    assert same.metric == "val_loss" and not same.promoted
    assert same.reason.startswith(f"val loss {same.candidate_val_loss:.4f} >= promoted")
    # the same documents, shards of another tokenizer: the promoted model cannot read them
    shutil.rmtree(root.shards)
    shutil.rmtree(root.tokenizer_dir)
    make_shards(root, corpus(docs=50), vocab_size=400)
    other = decide_and_promote(cfg, root, trained("c", 40), "c")
    assert other.metric == "bits_per_byte" and other.current == first.model_id
    texts = val_texts(root, budget)
    assert len(texts) >= 2
    assert other.candidate_bpb == pytest.approx(
        evaluate_texts(root.run("c") / "best.pt", texts).bits_per_byte)
    assert other.current_bpb == pytest.approx(evaluate_texts(
        root.models / first.model_id / "model.pt", texts).bits_per_byte)
    won = other.candidate_bpb < other.current_bpb
    assert other.promoted == won and other.reason.startswith("bits per byte ")
    assert "another tokenizer" in other.reason
    rows = [d for d in Registry(root).decisions() if d.get("candidate")]
    assert [r["metric"] for r in rows] == ["none", "val_loss", "bits_per_byte"]
