"""`cllm export`: each mappable recipe as a transformers folder (loaded offline, its logits,
greedy tokens and tokenizer equal ours) and as GGUF (read back tensor by tensor); refusals and
bad input as one line and exit 2, nothing at OUT; every command takes every form of a model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flows.shell.cllm import main
from flows.shell.runner import EXIT_OK, EXIT_USAGE
from model.checkpoint import load_checkpoint, read_model
from model.cllm import ModelConfig, mlp_hidden
from model.data import SplitTokens
from model.evaluate import load_model
from model.export import GGUF_NAME, ExportError, architecture, export_model
from model.sample import generate_ids
from model.tiny import corpus, make_shards, tiny_config
from model.train import train
from pipeline.config import SampleConfig
from pipeline.layout import DataRoot
from pipeline.shards import read_manifest
from pipeline.tokenizer import load_tokenizer

RECIPES = {  # name -> (train options, the transformers class it becomes)
    "gpt2": ({}, "GPT2LMHeadModel"),
    "gpt2-bias": ({"bias": True}, "GPT2LMHeadModel"),
    "llama": ({"position": "rope", "norm": "rmsnorm", "mlp": "swiglu"}, "LlamaForCausalLM"),
    "gpt-neox": ({"position": "rope", "bias": True}, "GPTNeoXForCausalLM"),
}
CONTEXT = 96  # room for a prompt and 64 greedy tokens (transformers does not slide)
TRICKY = "Fjörð, café — naïve 日本語 😀\n\n\tindented  twice.<|endoftext|>After the end."


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> DataRoot:
    root = DataRoot.at(tmp_path_factory.mktemp("export") / "data")
    make_shards(root, corpus(docs=60))
    return root


@pytest.fixture(scope="module")
def trained(data: DataRoot) -> dict[str, Path]:
    """A small trained model of each recipe (two layers: the mapping is per layer)."""
    out = {}
    for name, (options, _) in RECIPES.items():
        cfg = tiny_config(run=name, n_layer=2, block_size=CONTEXT, max_steps=60, lr=1e-2,
                          min_lr=1e-3, eval_interval=30, save_interval=30, **options)
        out[name] = train(cfg, data, progress=False).best_checkpoint
    return out


@pytest.fixture(scope="module")
def exported(trained: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hf")
    return {name: export_model(ckpt, folder / name, "hf").out for name, ckpt in trained.items()}


def _val_windows(data: DataRoot) -> torch.Tensor:
    tokens = SplitTokens(data.shards, read_manifest(data.manifest), "val")
    starts = [i * (tokens.total - CONTEXT) // 3 for i in range(4)]
    return torch.from_numpy(tokens.read(starts, CONTEXT))  # (4, CONTEXT) real text


@pytest.mark.parametrize("name", RECIPES)
def test_transformers_loads_the_folder_and_computes_our_logits(
        name: str, trained: dict[str, Path], exported: dict[str, Path], data: DataRoot) -> None:
    from transformers import AutoModelForCausalLM

    folder = exported[name]
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json"]
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()  # no trust_remote_code
    assert type(hf).__name__ == RECIPES[name][1]
    ours, _ = load_model(trained[name])
    random_ids = torch.randint(0, ours.cfg.vocab_size, (2, CONTEXT),
                               generator=torch.Generator().manual_seed(0))
    for ids in (random_ids, _val_windows(data)):
        with torch.no_grad():
            theirs = hf(ids).logits
            mine, _ = ours(ids)
        assert (theirs - mine).abs().max() < 1e-4
        assert mine.std() > 0.5  # trained logits, not all alike


@pytest.mark.parametrize("name", RECIPES)
def test_greedy_tokens_of_transformers_generate_equal_ours(
        name: str, trained: dict[str, Path], exported: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(exported[name]).eval()
    tok = AutoTokenizer.from_pretrained(exported[name])
    ours, meta = load_model(trained[name])
    prompt = tok("The quiet river")["input_ids"]
    greedy = SampleConfig(max_new_tokens=64, temperature=0.0, stop_at_eos=False)
    mine = list(generate_ids(ours, prompt, greedy, int(meta["tokenizer"]["eos_id"])))
    out = hf.generate(torch.tensor([prompt]), max_new_tokens=64, do_sample=False,
                      eos_token_id=None)
    assert out[0, len(prompt):].tolist() == mine and len(mine) == 64


def test_cllm_sample_greedy_is_the_text_transformers_generates(
        trained: dict[str, Path], exported: dict[str, Path], data: DataRoot,
        capsys: pytest.CaptureFixture) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(exported["llama"]).eval()
    tok = AutoTokenizer.from_pretrained(exported["llama"])
    prompt = "Every old engine"
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    out = hf.generate(ids, max_new_tokens=64, do_sample=False, eos_token_id=None)
    assert main(["--root", str(data.path), "sample", str(trained["llama"]), "-p", prompt,
                 "-t", "0", "-n", "64", "--set", "sample.stop_at_eos=false"]) == EXIT_OK
    assert capsys.readouterr().out == prompt + tok.decode(out[0, ids.shape[1]:]) + "\n"


def test_the_exported_tokenizer_gives_our_ids_and_decodes_back_exactly(
        exported: dict[str, Path], data: DataRoot) -> None:
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(exported["gpt2"])
    ours = load_tokenizer(data.tokenizer_json)
    texts = [ours.decode(SplitTokens(data.shards, read_manifest(data.manifest), "val")
                         .document(i)[:-1].tolist()) for i in range(5)] + [TRICKY]
    for text in texts:
        ids = theirs(text)["input_ids"]
        assert ids == ours.encode(text).ids
        assert theirs.decode(ids) == text
    assert theirs.eos_token == theirs.bos_token == theirs.pad_token == "<|endoftext|>"
    special = json.loads((exported["gpt2"] / "special_tokens_map.json").read_text())
    assert special["eos_token"] == "<|endoftext|>"
    assert json.loads((exported["gpt2"] / "tokenizer.json").read_text()) == json.loads(
        data.tokenizer_json.read_text())


def _expected_gguf(state: dict, cfg: ModelConfig, arch: str) -> dict[str, torch.Tensor]:
    """llama.cpp's tensor names and (out, in) layout, written out here by hand."""
    w = state["model"]
    C = cfg.n_embd
    out = {"token_embd.weight": w["wte.weight"], "output_norm.weight": w["ln_f.weight"]}
    if arch == "gpt2":
        out["position_embd.weight"] = w["wpe.weight"]
        out["output_norm.bias"] = torch.zeros(C)
    for i in range(cfg.n_layer):
        b, p = f"blk.{i}.", f"blocks.{i}."
        out[b + "attn_norm.weight"] = w[p + "ln_1.weight"]
        out[b + "ffn_norm.weight"] = w[p + "ln_2.weight"]
        out[b + "attn_output.weight"] = w[p + "attn.c_proj.weight"]
        out[b + "ffn_up.weight"] = w[p + "mlp.c_fc.weight"]
        out[b + "ffn_down.weight"] = w[p + "mlp.c_proj.weight"]
        if arch == "gpt2":
            out[b + "attn_qkv.weight"] = w[p + "attn.c_attn.weight"]
            for name, size in (("attn_norm", C), ("ffn_norm", C), ("attn_qkv", 3 * C),
                               ("attn_output", C), ("ffn_up", 4 * C), ("ffn_down", C)):
                out[f"{b}{name}.bias"] = torch.zeros(size)
        else:  # RoPE pairs as ours: llama.cpp's llama rotates adjacent pairs too
            q, k, v = w[p + "attn.c_attn.weight"].split(C)
            out.update({b + "attn_q.weight": q, b + "attn_k.weight": k, b + "attn_v.weight": v,
                        b + "ffn_gate.weight": w[p + "mlp.c_gate.weight"]})
    return out


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_gguf_reads_back_with_every_tensor_the_metadata_and_the_vocabulary(
        name: str, trained: dict[str, Path], tmp_path: Path, data: DataRoot) -> None:
    import gguf

    done = export_model(trained[name], tmp_path / "gguf", "gguf")
    assert done.files == [GGUF_NAME]
    reader = gguf.GGUFReader(str(tmp_path / "gguf" / GGUF_NAME))
    state = load_checkpoint(trained[name])
    cfg = ModelConfig(**state["model_config"])
    arch = "gpt2" if name == "gpt2" else "llama"
    expected = _expected_gguf(state, cfg, arch)
    tensors = {t.name: t for t in reader.tensors}
    assert set(tensors) == set(expected)
    for tensor_name, want in expected.items():
        got = tensors[tensor_name]
        assert got.tensor_type == gguf.GGMLQuantizationType.F32, tensor_name
        assert list(got.shape) == list(reversed(want.shape)), tensor_name  # ggml's order
        assert torch.equal(torch.from_numpy(got.data.copy()), want.float()), tensor_name

    def field(key: str) -> object:
        return reader.fields[key].contents()

    assert field("general.architecture") == arch
    assert field(f"{arch}.context_length") == CONTEXT
    assert field(f"{arch}.embedding_length") == cfg.n_embd
    assert field(f"{arch}.block_count") == cfg.n_layer
    assert field(f"{arch}.feed_forward_length") == mlp_hidden(cfg)
    assert field(f"{arch}.attention.head_count") == cfg.n_head
    if arch == "llama":
        assert field("llama.rope.dimension_count") == cfg.n_embd // cfg.n_head
        assert field("llama.rope.freq_base") == 10000.0
        assert field("llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    tok = json.loads(data.tokenizer_json.read_text())
    vocab = {**tok["model"]["vocab"], **{t["content"]: t["id"] for t in tok["added_tokens"]}}
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "gpt-2"
    assert field("tokenizer.ggml.tokens") == sorted(vocab, key=vocab.get)
    assert field("tokenizer.ggml.merges") == [" ".join(m) for m in tok["model"]["merges"]]
    eos = state["tokenizer"]["eos_id"]
    assert field("tokenizer.ggml.eos_token_id") == eos
    assert field("tokenizer.ggml.token_type")[eos] == gguf.TokenType.CONTROL


@pytest.mark.parametrize(("options", "fmt", "named"), [
    ({"position": "prime"}, "hf", "train.position = prime"),
    ({"symmetry": "twelvefold"}, "gguf", "train.symmetry = twelvefold"),
    ({"norm": "rmsnorm"}, "hf", "train.position = learned with train.norm = rmsnorm"),
    ({"position": "rope"}, "gguf", "GPT-NeoX recipe"),
    ({"tie_embeddings": False}, "hf", "train.tie_embeddings = false"),
])
def test_a_recipe_no_architecture_computes_is_refused_naming_the_option(
        options: dict, fmt: str, named: str) -> None:
    with pytest.raises(ExportError, match=named) as refused:
        architecture(ModelConfig(vocab_size=300, **options), fmt)  # type: ignore[arg-type]
    assert "CLLM checkpoint and model.safetensors" in str(refused.value)


def _export(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["cllm", "--root", str(cwd / "data"), "-q", "export", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def _one_line_exit_2(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == EXIT_USAGE, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), done.stderr


def test_bad_input_is_one_line_exit_2_and_nothing_half_written(
        trained: dict[str, Path], tmp_path: Path) -> None:
    notes = tmp_path / "notes.pt"
    notes.write_text("not a checkpoint at all")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(trained["gpt2"].read_bytes()[:5000])
    for bad in (notes, truncated):
        _one_line_exit_2(_export([str(bad), "--out", str(tmp_path / "o")], tmp_path), bad.name)
        assert not (tmp_path / "o").exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    _one_line_exit_2(_export([str(trained["gpt2"]), "--out", str(taken)], tmp_path),
                     "not empty", "--force")
    assert sorted(p.name for p in taken.iterdir()) == ["keep.txt"]
    crystal = load_checkpoint(trained["gpt2"])
    crystal["model_config"]["position"] = "spiral"
    torch.save(crystal, tmp_path / "spiral.pt")
    _one_line_exit_2(_export([str(tmp_path / "spiral.pt"), "--out", str(tmp_path / "s")],
                             tmp_path), "train.position = spiral")
    wordpiece = load_checkpoint(trained["llama"])
    wordpiece["tokenizer"]["json"] = _wordpiece_json(wordpiece["model_config"]["vocab_size"])
    torch.save(wordpiece, tmp_path / "wordpiece.pt")
    _one_line_exit_2(_export([str(tmp_path / "wordpiece.pt"), "--format", "gguf", "--out",
                              str(tmp_path / "w")], tmp_path), "WordPiece", "--format hf")
    assert not any(p.name.startswith((".o", ".s", ".w", ".taken")) for p in tmp_path.iterdir())
    forced = _export([str(trained["gpt2"]), "--out", str(taken), "--force"], tmp_path)
    assert forced.returncode == EXIT_OK, forced.stderr
    assert "keep.txt" not in {p.name for p in taken.iterdir()}
    assert (taken / "config.json").is_file()


def _wordpiece_json(size: int) -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, size)}}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok.to_str()


def test_every_command_takes_a_run_checkpoint_a_registry_folder_and_model_safetensors(
        trained: dict[str, Path], data: DataRoot, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    from flows.registry import ModelRecord, Registry
    from flows.shell.legacy_model import inference_main

    run = trained["llama"].parent
    record = ModelRecord(id="m1", run="llama", step=60, checkpoint=str(trained["llama"]),
                         val_loss=1.0, manifest_version=1, tokenizer_sha256="")
    Registry(data).promote(trained["llama"], record)
    current = data.models / "current"
    sample = ["-t", "0", "-n", "12", "-p", "The old"]
    texts = set()
    for form in (run, trained["llama"], current, data.models / "m1",
                 current / "model.safetensors", run / "model.safetensors"):
        assert main(["--root", str(data.path), "-q", "sample", str(form), *sample]) == EXIT_OK
        texts.add(capsys.readouterr().out)
        assert inference_main([str(form), *sample]) == EXIT_OK
        texts.add(capsys.readouterr().out)
        assert main(["--root", str(data.path), "-q", "evaluate", str(form), "--json"]) == EXIT_OK
        texts.add(json.loads(capsys.readouterr().out)["loss"])
    assert len(texts) == 2  # one text and one loss, whichever form the model came in
    done = export_model(current / "model.safetensors", tmp_path / "from-st", "hf")
    assert done.source.endswith("model.safetensors") and (done.out / "tokenizer.json").is_file()
    assert read_model(current)["tokenizer"]["json"] == read_model(
        current / "model.safetensors")["tokenizer"]["json"] != ""


def test_a_promoted_model_gets_its_transformers_folder_and_no_optimizer_moments(
        trained: dict[str, Path], data: DataRoot) -> None:
    from transformers import AutoModelForCausalLM

    from flows.registry import ModelRecord, Registry

    record = ModelRecord(id="m2", run="gpt2", step=60, checkpoint=str(trained["gpt2"]),
                         val_loss=1.0, manifest_version=1, tokenizer_sha256="")
    Registry(data).promote(trained["gpt2"], record)
    folder = data.models / "current"
    copy = load_checkpoint(folder / "model.pt")
    assert "optimizer" not in copy and "rng" not in copy
    assert copy["tokenizer"]["json"] and copy["model_config"]["n_layer"] == 2
    assert torch.equal(copy["model"]["wte.weight"],
                       load_checkpoint(trained["gpt2"])["model"]["wte.weight"])
    assert (folder / "model.pt").stat().st_size < 0.5 * trained["gpt2"].stat().st_size
    hf = AutoModelForCausalLM.from_pretrained(folder / "hf")
    assert type(hf).__name__ == "GPT2LMHeadModel"
    Registry(data).promote(trained["gpt2"].parent / "checkpoints" / "step-00000030.pt",
                           ModelRecord(id="m3", run="gpt2", step=30, checkpoint="",
                                       val_loss=1.0, manifest_version=1, tokenizer_sha256=""))
    assert (data.models / "m3" / "hf" / "config.json").is_file()


def test_export_needs_its_extra_and_nothing_else_imports_it(data: DataRoot,
                                                             tmp_path: Path) -> None:
    """train, evaluate and sample run without transformers, gguf or tensorboard loaded."""
    code = (
        "import sys; from flows.shell.cllm import main\n"
        f"root = {str(tmp_path / 'r')!r}\n"
        "from pipeline.layout import DataRoot; from model.tiny import corpus, make_shards\n"
        "make_shards(DataRoot.at(root), corpus(docs=20))\n"
        "for args in (['train', '--max-steps', '3', '--device', 'cpu', '--set', "
        "'train.n_layer=1', '--set', 'train.n_embd=16', '--set', 'train.n_head=2', "
        "'--set', 'train.block_size=16', '--set', 'train.batch_size=2', "
        "'--set', 'train.eval_interval=2', '--set', 'train.eval_iters=1'], "
        "['evaluate', root + '/runs/default'], ['sample', root + '/runs/default', '-n', '3']):\n"
        "    assert main(['--root', root, '-q', *args]) == 0, args\n"
        "heavy = ('transformers', 'gguf', 'tensorboard')\n"
        "print('loaded:', [m for m in heavy if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "loaded: []"


@pytest.mark.slow
def test_the_generation_bench_smoke_mode_runs_and_the_three_ways_agree(tmp_path: Path) -> None:
    from conftest import REPO

    out = tmp_path / "sample.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "sample.py"), "--smoke",
                           "--threads", "1", "--out", str(out)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["same_tokens"] == {"no_cache": True, "transformers": True}
    assert set(result["tokens_per_s"]) == {"ours", "no_cache", "transformers"}
    assert result["threads"] == 1 and "ours / no_cache" in done.stdout
