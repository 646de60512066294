"""The trained model for the tools its users have: a Hugging Face transformers folder and GGUF.

    cllm export [CHECKPOINT] --format hf|gguf --out DIR [--force]

A recipe maps to the architecture that computes it exactly (`architecture`):

    learned positions + layernorm + gelu   GPT-2     (GPT2LMHeadModel; llama.cpp's gpt2)
    rope + rmsnorm + swiglu                Llama     (LlamaForCausalLM; llama.cpp's llama)
    rope + layernorm + gelu                GPT-NeoX  (GPTNeoXForCausalLM, sequential residual)

each with or without biases (zeros where a layer has one and ours none); the rest (fixed
position tables, the twelvefold symmetry, other mixes) are refused, naming the option. The
weights are renamed and laid out in plain torch (`model.hf_layout`); transformers and gguf
(the `export` extra) are imported only when an export runs. OUT appears whole or not at all:
everything is written to a temporary folder beside it, then renamed into place.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from model.cllm import NORM_EPS, ROPE_BASE, ModelConfig, mlp_hidden
from model.hf_layout import Arch, hf_tensors
from pipeline.config import FIXED_POSITIONS
from pipeline.errors import EnvironmentProblem

log = logging.getLogger(__name__)

ExportFormat = Literal["hf", "gguf"]
RECIPES: dict[tuple[str, str, str], Arch] = {  # (position, norm, mlp) -> architecture
    ("learned", "layernorm", "gelu"): "gpt2",
    ("rope", "rmsnorm", "swiglu"): "llama",
    ("rope", "layernorm", "gelu"): "gpt_neox",
}
HF_CLASSES: dict[Arch, tuple[str, str]] = {  # transformers' config and model classes
    "gpt2": ("GPT2Config", "GPT2LMHeadModel"),
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM"),
}
EMBEDDINGS: dict[Arch, str] = {"gpt2": "transformer.wte.weight",  # which the head is tied to
                               "llama": "model.embed_tokens.weight",
                               "gpt_neox": "gpt_neox.embed_in.weight"}
GGUF_ARCHS: dict[Arch, str] = {"gpt2": "GPT2", "llama": "LLAMA"}  # gguf.MODEL_ARCH members
GGUF_NAME = "model.gguf"
HOLDERS = ("exportable recipes: learned + layernorm + gelu (GPT-2: hf, gguf), rope + rmsnorm + "
           "swiglu (Llama: hf, gguf), rope + layernorm + gelu (GPT-NeoX: hf); every recipe is "
           "held by its CLLM checkpoint and model.safetensors (cllm sample, cllm evaluate)")
EXTRA_HINT = "pip install -e '.[export]' in the project (or pip install 'cllm-pipeline[export]')"


class ExportError(ValueError):
    """A model, tokenizer or OUT that the format cannot take (a usage error: exit 2)."""


@dataclass(kw_only=True, slots=True)
class Exported:
    out: Path
    format: ExportFormat
    architecture: Arch
    source: str  # the file the model was read from
    files: list[str]


# --- which architecture ---------------------------------------------------------------------


def architecture(cfg: ModelConfig, fmt: ExportFormat = "hf") -> Arch:
    """The architecture that computes this recipe exactly in `fmt`, or ExportError naming
    the option that none does."""
    where = "Hugging Face" if fmt == "hf" else "GGUF (llama.cpp)"
    if cfg.symmetry != "none":
        raise ExportError(f"train.symmetry = {cfg.symmetry} (a rotation of each token's "
                          f"embedding by its id) has no {where} architecture; {HOLDERS}")
    if not cfg.tie_embeddings:  # every exported architecture here ties its head
        raise ExportError(f"train.tie_embeddings = false (a head of its own) is not exported "
                          f"to {where}; {HOLDERS}")
    if cfg.position in FIXED_POSITIONS:
        raise ExportError(f"train.position = {cfg.position} (a fixed table added to the "
                          f"embeddings) has no {where} architecture; {HOLDERS}")
    arch = RECIPES.get((cfg.position, cfg.norm, cfg.mlp))
    if arch is None:
        raise ExportError(f"train.position = {cfg.position} with train.norm = {cfg.norm} and "
                          f"train.mlp = {cfg.mlp} has no {where} architecture; {HOLDERS}")
    if fmt == "gguf" and arch not in GGUF_ARCHS:
        raise ExportError(f"the GPT-NeoX recipe (train.position = rope with train.norm = "
                          f"layernorm and train.mlp = gelu) is not exported to GGUF; {HOLDERS}")
    return arch


def hf_config(cfg: ModelConfig, arch: Arch, eos_id: int) -> dict[str, Any]:
    """The keyword arguments of the architecture's transformers config class."""
    hs, d = cfg.n_embd // cfg.n_head, cfg.dropout
    common: dict[str, Any] = {"vocab_size": cfg.vocab_size, "bos_token_id": eos_id,
                              "eos_token_id": eos_id, "pad_token_id": eos_id,
                              "tie_word_embeddings": True,
                              "architectures": [HF_CLASSES[arch][1]]}
    if arch == "gpt2":
        return {**common, "n_positions": cfg.block_size, "n_embd": cfg.n_embd,
                "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": 4 * cfg.n_embd,
                "activation_function": "gelu", "layer_norm_epsilon": NORM_EPS,
                "resid_pdrop": d, "embd_pdrop": d, "attn_pdrop": d}
    shape = {"hidden_size": cfg.n_embd, "intermediate_size": mlp_hidden(cfg),
             "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
             "max_position_embeddings": cfg.block_size, "attention_bias": cfg.bias,
             "attention_dropout": d}
    if arch == "llama":
        return {**common, **shape, "num_key_value_heads": cfg.n_head, "head_dim": hs,
                "hidden_act": "silu", "rms_norm_eps": NORM_EPS, "rope_theta": ROPE_BASE,
                "mlp_bias": cfg.bias}
    return {**common, **shape, "hidden_act": "gelu", "layer_norm_eps": NORM_EPS,
            "rotary_pct": 1.0, "rotary_emb_base": ROPE_BASE, "use_parallel_residual": False,
            "hidden_dropout": d}


# --- writing --------------------------------------------------------------------------------


def _tokenizer_of(state: dict[str, Any]) -> tuple[str, int]:
    """The model's tokenizer.json text and end-of-text id (every export carries them)."""
    tok = state.get("tokenizer") or {}
    if not tok.get("json") or tok.get("eos_id") is None:
        raise ExportError(f"{state['path']} carries no tokenizer (made from shards without "
                          "tokenizer/tokenizer.json): an export needs one")
    return tok["json"], int(tok["eos_id"])


def _token_text(tokenizer_json: str, token_id: int) -> str:
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tokenizer_json).id_to_token(token_id)


def _write_hf_tokenizer(folder: Path, tokenizer_json: str, eos_id: int, context: int) -> None:
    """tokenizer.json as the model's, and the two files transformers reads beside it. The end
    of text is also BOS and PAD: a document follows an end of text in the shards."""
    eos = _token_text(tokenizer_json, eos_id)
    special = {"bos_token": eos, "eos_token": eos, "pad_token": eos}
    (folder / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **special,
              "clean_up_tokenization_spaces": False,  # decode must give the text back exactly
              "add_bos_token": False, "add_eos_token": False, "model_max_length": context}
    for name, data in (("tokenizer_config.json", config), ("special_tokens_map.json", special)):
        (folder / name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n",
                                   encoding="utf-8")


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise EnvironmentProblem(f"exporting for transformers needs it: {EXTRA_HINT}") from None
    return transformers


def write_hf(folder: Path, state: dict[str, Any], arch: Arch) -> None:
    """The transformers folder: config.json, generation_config.json, model.safetensors (by
    the architecture's own save_pretrained) and the tokenizer."""
    import torch

    transformers = _import_transformers()
    cfg = ModelConfig(**state["model_config"])
    tokenizer_json, eos_id = _tokenizer_of(state)
    config_class, model_class = (getattr(transformers, name) for name in HF_CLASSES[arch])
    config = config_class(**hf_config(cfg, arch, eos_id))
    tensors = hf_tensors(state["model"], cfg, arch)
    with torch.no_grad():
        model = model_class(config)
        expected = set(model.state_dict())
        tensors["lm_head.weight"] = tensors[EMBEDDINGS[arch]]
        if set(tensors) != expected:  # a mapping that misses or invents a tensor is a bug
            raise RuntimeError(f"export to {arch}: tensors {sorted(expected ^ set(tensors))} "
                               "differ from the model's")
        model.load_state_dict(tensors, strict=True)
    bars = transformers.utils.logging
    shown = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()  # the export says one line when done, not a bar per file
    try:
        model.save_pretrained(folder)
    finally:
        if shown:
            bars.enable_progress_bar()
    _write_hf_tokenizer(folder, tokenizer_json, eos_id, cfg.block_size)


def _gguf_vocabulary(tokenizer_json: str, vocab_size: int) -> tuple[list[str], list[int],
                                                                    list[str]]:
    """(tokens in id order, their GGUF token types, merges) of a byte-level BPE with GPT-2's
    pre-tokenizer: what llama.cpp's gpt2 vocabulary reads; any other is refused."""
    import gguf

    data = json.loads(tokenizer_json)
    model, pre = data.get("model") or {}, data.get("pre_tokenizer") or {}
    shape = (model.get("type"), pre.get("type"), pre.get("use_regex"),
             pre.get("add_prefix_space"), (data.get("decoder") or {}).get("type"),
             data.get("normalizer"))
    if shape != ("BPE", "ByteLevel", True, False, "ByteLevel", None):
        raise ExportError(
            f"the model's tokenizer (model {shape[0]}, pre-tokenizer {shape[1]}, normalizer "
            f"{(shape[5] or {}).get('type')}) is not a vocabulary GGUF holds: llama.cpp reads "
            "a byte-level BPE with GPT-2's pre-tokenizer and no normalizer; --format hf "
            "holds any tokenizers tokenizer")
    tokens: list[str | None] = [None] * vocab_size
    types = [gguf.TokenType.NORMAL] * vocab_size
    for text, i in model["vocab"].items():
        if i < vocab_size:
            tokens[i] = text
    for added in data.get("added_tokens", []):
        if added["id"] < vocab_size:
            tokens[added["id"]] = added["content"]
            types[added["id"]] = gguf.TokenType.CONTROL if added.get("special") \
                else gguf.TokenType.USER_DEFINED
    if None in tokens or len(model["vocab"]) > vocab_size:
        raise ExportError(f"the model's tokenizer has {len(model['vocab'])} tokens for an "
                          f"embedding of {vocab_size} rows: GGUF needs one token per row")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return [t for t in tokens if t is not None], [int(t) for t in types], merges


def write_gguf(path: Path, state: dict[str, Any], arch: Arch, name: str) -> None:
    """One GGUF file (fp32) by gguf's writer: hyperparameters, the vocabulary, the tensors
    under llama.cpp's names (gguf's own map from the transformers names)."""
    try:
        import gguf
    except ImportError:
        raise EnvironmentProblem(f"exporting to GGUF needs the gguf package: {EXTRA_HINT}") \
            from None
    cfg = ModelConfig(**state["model_config"])
    tokenizer_json, eos_id = _tokenizer_of(state)
    tokens, types, merges = _gguf_vocabulary(tokenizer_json, cfg.vocab_size)
    member = gguf.MODEL_ARCH[GGUF_ARCHS[arch]]
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[member])
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(cfg.block_size)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_block_count(cfg.n_layer)
    writer.add_feed_forward_length(mlp_hidden(cfg))
    writer.add_head_count(cfg.n_head)
    writer.add_head_count_kv(cfg.n_head)
    if arch == "llama":
        writer.add_layer_norm_rms_eps(NORM_EPS)
        writer.add_rope_dimension_count(cfg.n_embd // cfg.n_head)
        writer.add_rope_freq_base(ROPE_BASE)
        writer.add_vocab_size(cfg.vocab_size)
    else:
        writer.add_layer_norm_eps(NORM_EPS)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for add in (writer.add_bos_token_id, writer.add_eos_token_id, writer.add_pad_token_id):
        add(eos_id)
    writer.add_add_bos_token(False)
    names = gguf.get_tensor_name_map(member, cfg.n_layer)
    for hf_name, tensor in hf_tensors(state["model"], cfg, arch, for_gguf=True).items():
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise RuntimeError(f"gguf has no name for {hf_name}")  # a bug in the mapping
        writer.add_tensor(gguf_name, tensor.float().contiguous().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# --- the command ------------------------------------------------------------------------------


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"--out {out} exists and is not empty (--force replaces it)")


def _publish(tmp: Path, out: Path) -> None:
    """Put the finished folder at `out` by renames: a reader sees the old one or the new."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.replace(out, old / out.name)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def export_model(source: Path, out: Path, fmt: ExportFormat = "hf", *, force: bool = False
                 ) -> Exported:
    """Export the model at `source` (a checkpoint, run or registry folder, or model.safetensors)
    to the folder `out`, whole or not at all."""
    from model.checkpoint import read_model

    out = Path(out)
    _check_out(out, force)
    state = read_model(Path(source))
    cfg = ModelConfig(**state["model_config"])
    arch = architecture(cfg, fmt)
    _tokenizer_of(state)  # before any work: an export without a tokenizer is refused
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp",
                                dir=out.absolute().parent))
    try:
        if fmt == "hf":
            write_hf(tmp, state, arch)
        else:
            write_gguf(tmp / GGUF_NAME, state, arch, name=Path(state["path"]).parent.name)
        files = sorted(p.name for p in tmp.iterdir())
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("export: %s (%s) written as %s to %s", state["path"], arch, fmt, out)
    return Exported(out=out, format=fmt, architecture=arch, source=state["path"], files=files)
