"""Generation (sampler rules on hand-made distributions, streaming) and evaluation."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from model.cllm import ModelConfig
from model.data import DocRef, SplitTokens
from model.evaluate import evaluate_checkpoint, evaluate_documents, evaluate_tokens
from model.sample import TextGenerator, generate_ids, next_token_distribution
from model.tiny import corpus, make_shards, tiny_config
from model.train import train
from pipeline.config import SampleConfig
from pipeline.layout import DataRoot
from pipeline.tokenizer import load_tokenizer

P = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])


class Scripted(nn.Module):
    """A stand-in model: logits log(P) everywhere, or one-hot on a scripted token sequence."""

    def __init__(self, script: list[int] | None = None, vocab: int = 5) -> None:
        super().__init__()
        self.cfg = ModelConfig(vocab_size=vocab, block_size=8, n_layer=1, n_head=1, n_embd=2)
        self.dummy = nn.Parameter(torch.zeros(1))
        self.script = script
        self.calls = 0

    def forward(self, idx: torch.Tensor, targets: None = None) -> tuple[torch.Tensor, None]:
        B, T = idx.shape
        if self.script is None:
            row = torch.log(P)
        else:
            row = torch.full((self.cfg.vocab_size,), -1e9)
            row[self.script[min(self.calls, len(self.script) - 1)]] = 0.0
        self.calls += 1
        return row.expand(B, T, -1).clone(), None

    def new_cache(self) -> _Room:
        return _Room()

    def decode(self, idx: torch.Tensor, cache: _Room) -> torch.Tensor:
        return self(idx)[0][:, -1]


class _Room:
    """The scripted model's "cache": always room for one more token."""

    room = 1

    def reset(self) -> None:
        pass


def test_plain_sampling_keeps_the_distribution() -> None:
    assert torch.allclose(next_token_distribution(torch.log(P)), P)


def test_temperature_sharpens_or_flattens() -> None:
    hot = next_token_distribution(torch.log(P), temperature=2.0)
    assert torch.allclose(hot, P.sqrt() / P.sqrt().sum())
    greedy = next_token_distribution(torch.log(P), temperature=0.0)
    assert greedy.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_top_k_keeps_the_k_most_likely() -> None:
    probs = next_token_distribution(torch.log(P), top_k=2)
    assert torch.allclose(probs, torch.tensor([0.5, 0.2, 0, 0, 0]) / 0.7)


@pytest.mark.parametrize(("top_p", "kept"), [(0.5, 1), (0.6, 2), (0.7, 2), (0.71, 3), (0.99, 5)])
def test_top_p_keeps_the_nucleus_that_reaches_p(top_p: float, kept: int) -> None:
    probs = next_token_distribution(torch.log(P[[3, 0, 4, 2, 1]]), top_p=top_p)  # unsorted
    expected = torch.zeros(5)
    expected[:kept] = P[:kept] / P[:kept].sum()
    assert torch.allclose(probs[[1, 4, 3, 0, 2]], expected, atol=1e-6)


def test_drawn_tokens_follow_the_filtered_distribution() -> None:
    draws = list(generate_ids(Scripted(), [1], SampleConfig(max_new_tokens=6000,
                                                               temperature=1.0, top_k=3)))
    freq = Counter(draws)
    assert set(freq) == {0, 1, 2}
    kept = P[:3] / P[:3].sum()
    for token in range(3):
        assert freq[token] / len(draws) == pytest.approx(float(kept[token]), abs=0.02)


def test_a_seed_repeats_a_sample_and_another_seed_does_not() -> None:
    def draw(seed: int) -> list[int]:
        return list(generate_ids(Scripted(), [1], SampleConfig(max_new_tokens=40, seed=seed,
                                                                  temperature=1.0)))

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_generation_stops_at_end_of_text() -> None:
    out = list(generate_ids(Scripted(script=[3, 2, 4, 0, 1]), [1],
                            SampleConfig(max_new_tokens=50, temperature=1.0), eos_id=0))
    assert out == [3, 2, 4]
    keep_going = SampleConfig(max_new_tokens=5, temperature=1.0, stop_at_eos=False)
    assert list(generate_ids(Scripted(script=[3, 0, 1]), [1], keep_going, eos_id=0)) == \
        [3, 0, 1, 1, 1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[DataRoot, Path]:
    root = DataRoot.at(tmp_path_factory.mktemp("sample") / "data")
    make_shards(root, corpus())
    result = train(tiny_config(max_steps=120, lr=1e-2, min_lr=1e-3, eval_iters=3,
                               eval_interval=40, save_interval=40), root, progress=False)
    return root, result.last_checkpoint


def test_streamed_text_never_splits_a_character(trained: tuple[DataRoot, Path]) -> None:
    root, checkpoint = trained
    tok = load_tokenizer(root.tokenizer_json)
    text = "Caf\u00e9 \u65e5\u672c \U0001f600 done"
    ids = tok.encode(text).ids
    assert len(ids) > len(text.split())  # the unseen characters are split into byte tokens
    gen = TextGenerator.load(checkpoint, "cpu")
    gen.model = Scripted(script=[*ids, gen.eos_id], vocab=gen.model.cfg.vocab_size)
    pieces = list(gen.stream("", SampleConfig(max_new_tokens=100, temperature=1.0)))
    assert "".join(pieces) == text
    assert len(pieces) > 3 and not any("\ufffd" in p for p in pieces)


@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "sampled"])
def test_the_cache_makes_the_tokens_that_reading_the_window_again_does(
        trained: tuple[DataRoot, Path], temperature: float) -> None:
    gen = TextGenerator.load(trained[1], "cpu")
    window = gen.model.cfg.block_size
    prompt = gen.tokenizer.encode("The small cat sees the river.").ids
    settings = SampleConfig(max_new_tokens=3 * window, temperature=temperature, seed=5,
                            stop_at_eos=False)  # past block_size: the window slides
    cached = list(generate_ids(gen.model, prompt, settings, gen.eos_id))
    again = list(generate_ids(gen.model, prompt, settings, gen.eos_id, use_cache=False))
    assert len(cached) == 3 * window
    assert cached == again


def test_sampling_a_trained_model_makes_corpus_words(trained: tuple[DataRoot, Path]) -> None:
    gen = TextGenerator.load(trained[1], "cpu")
    text = gen.text("The small", SampleConfig(max_new_tokens=30, temperature=0.0))
    words = {w.strip(".").lower() for w in text.split()}
    vocabulary = {"the", "a", "every", "one", "this", "cat", "river", "engine", "garden",
                  "lattice", "clock", "prime", "spiral", "model", "crystal"}
    assert len(words & vocabulary) >= 2
    assert text == gen.text("The small", SampleConfig(max_new_tokens=30, temperature=0.0))


def test_cllm_inference_tool(trained: tuple[DataRoot, Path], capsys: pytest.CaptureFixture
                             ) -> None:
    from flows.shell.legacy_model import inference_main

    assert inference_main([str(trained[1]), "-p", "Every", "-n", "12", "-t", "0", "-v",
                           "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Every") and len(out) > len("Every\n")
    assert "parameters" in err and "tokens/s" in err
    assert inference_main([str(trained[1]), "--top-p", "0"]) == 2


def test_cllm_inference_interrupted_exits_130_with_one_line(
        trained: tuple[DataRoot, Path], capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.shell.legacy_model import inference_main
    from flows.shell.runner import EXIT_INTERRUPTED

    def interrupted(self: TextGenerator, prompt: str, settings: SampleConfig,
                    new: list[int] | None = None) -> Iterator[str]:
        yield " once"
        raise KeyboardInterrupt  # Ctrl-C while generating

    monkeypatch.setattr(TextGenerator, "stream", interrupted)
    assert inference_main([str(trained[1]), "-p", "Every", "--device", "cpu"]) \
        == EXIT_INTERRUPTED
    out, err = capsys.readouterr()
    assert out == "Every once\n"  # the text so far, its line ended
    assert err.splitlines() == ["cllm_inference: interrupted"]  # no traceback


def test_cllm_inference_bad_input_is_one_line_naming_it(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    from flows.shell.legacy_model import inference_main
    from flows.shell.runner import EXIT_FAILED, EXIT_USAGE

    missing = tmp_path / "missing.pt"
    assert inference_main([str(missing)]) == EXIT_FAILED
    assert capsys.readouterr().err.splitlines() == [
        f"cllm_inference: no checkpoint or model folder at {missing}"]
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert inference_main([str(junk), "--device", "cpu"]) == EXIT_FAILED
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"cllm_inference: {junk}: not a readable checkpoint")
    assert inference_main([str(junk), "-n", "0"]) == EXIT_USAGE
    assert capsys.readouterr().err.splitlines() == ["cllm_inference: -n must be > 0, got 0"]


def test_val_evaluation_is_deterministic_and_matches_the_trainer(
        trained: tuple[DataRoot, Path]) -> None:
    root, checkpoint = trained
    first = evaluate_checkpoint(checkpoint, root, windows=3 * 8, batch_size=5, device="cpu")
    again = evaluate_checkpoint(checkpoint, root, windows=3 * 8, batch_size=8, device="cpu")
    assert first.loss == pytest.approx(again.loss, rel=1e-6)
    assert first.step == 120 and first.windows == 24 and first.tokens == 24 * 32
    from model.checkpoint import load_checkpoint

    assert first.loss == pytest.approx(load_checkpoint(checkpoint)["val_loss"], rel=1e-5)
    assert first.perplexity == pytest.approx(math.exp(first.loss))


def test_documents_and_token_arrays_are_scored_alike(trained: tuple[DataRoot, Path]) -> None:
    root, checkpoint = trained
    val = SplitTokens.open(root.shards, "val")
    docs = [DocRef("val", 0), DocRef("val", val.docs - 1), DocRef("train", 3)]
    by_ref = evaluate_documents(checkpoint, root, docs, device="cpu")
    train_split = SplitTokens.open(root.shards, "train")
    arrays = [val.document(0), val.document(val.docs - 1), train_split.document(3)]
    by_tokens = evaluate_tokens(checkpoint, arrays, device="cpu")
    assert by_ref.tokens == by_tokens.tokens == sum(len(a) for a in arrays)
    assert by_ref.loss == pytest.approx(by_tokens.loss, rel=1e-6)
    assert arrays[0][-1] == 0  # each document ends with its end-of-text, which is scored
    assert by_ref.loss < math.log(320) - 1.0  # the model learned something
    noise = evaluate_tokens(checkpoint, [np.random.default_rng(0).integers(1, 320, 200)],
                            device="cpu")
    assert noise.loss > by_ref.loss + 1.0
    with pytest.raises(IndexError, match="documents"):
        evaluate_documents(checkpoint, root, [DocRef("val", val.docs)], device="cpu")


def test_evaluate_command_scores_chosen_documents(trained: tuple[DataRoot, Path],
                                                  capsys: pytest.CaptureFixture) -> None:
    import json

    from flows.shell.cllm import main

    root, checkpoint = trained
    assert main(["--root", str(root.path), "evaluate", str(checkpoint), "--doc", "val:0",
                 "--doc", "train:2", "--json", "--device", "cpu"]) == 0
    shown = json.loads(capsys.readouterr().out)
    direct = evaluate_documents(checkpoint, root, [DocRef("val", 0), DocRef("train", 2)],
                                device="cpu")
    assert shown["what"] == "documents" and shown["windows"] == 2
    assert shown["loss"] == pytest.approx(direct.loss)
    assert main(["--root", str(root.path), "evaluate", str(checkpoint), "--doc", "test:1"]) == 1


def test_bits_per_byte_is_the_loss_per_utf8_byte_of_the_text(
        trained: tuple[DataRoot, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json
    import shutil

    from flows.shell.cllm import main
    from model.evaluate import evaluate_texts

    root, checkpoint = trained
    tok = load_tokenizer(root.tokenizer_json)
    val = SplitTokens.open(root.shards, "val")
    texts = [tok.decode(val.document(i)[:-1].tolist()) for i in range(val.docs)]
    assert val.text_bytes == sum(len(t.encode("utf-8")) for t in texts)
    # the val windows: a token stands for the split's bytes per token
    windows = evaluate_checkpoint(checkpoint, root, windows=24, batch_size=8, device="cpu")
    assert windows.bits_per_byte == pytest.approx(
        windows.loss / math.log(2) * val.total / val.text_bytes)
    # whole documents: their own bytes; the same by token ids or by text (one tokenizer)
    every = [DocRef("val", i) for i in range(val.docs)]
    docs = evaluate_documents(checkpoint, root, every, device="cpu")
    assert docs.bits_per_byte == pytest.approx(
        docs.loss * docs.tokens / math.log(2) / val.text_bytes)
    on_text = evaluate_texts(checkpoint, texts, device="cpu")
    assert on_text.tokens == docs.tokens and on_text.loss == pytest.approx(docs.loss, rel=1e-6)
    assert on_text.bits_per_byte == pytest.approx(docs.bits_per_byte, rel=1e-6)
    assert main(["--root", str(root.path), "-q", "evaluate", str(checkpoint), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["bits_per_byte"] == pytest.approx(
        evaluate_checkpoint(checkpoint, root, windows=50 * 8, batch_size=8).bits_per_byte)
    # shards of manifest format 1 count no bytes: no bits per byte, said so
    old = DataRoot.at(tmp_path / "old")
    shutil.copytree(root.path, old.path)
    manifest = json.loads(old.manifest.read_text())
    manifest["format_version"] = 1
    for shard in manifest["shards"]:
        del shard["text_bytes"]
    old.manifest.write_text(json.dumps(manifest))
    assert main(["--root", str(old.path), "-q", "evaluate", str(checkpoint)]) == 0
    said = capsys.readouterr().out
    assert "bits per byte n/a (shards of manifest format 1 count no bytes" in said
    assert evaluate_checkpoint(checkpoint, old, windows=8, device="cpu").bits_per_byte is None
