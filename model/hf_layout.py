"""Our weights under each transformers architecture's names, in its layout (plain torch).

GPT-2's Conv1D layers hold (in, out) where a Linear holds (out, in); HF's Llama and GPT-NeoX
rotate the halves of each head (m, m + hs/2) where we rotate interleaved pairs (2m, 2m+1), so
their q and k rows are permuted as HF's own conversion scripts do; llama.cpp rotates pairs as
we do, so what GGUF gets keeps ours. Biases a layer has there and ours lacks are zeros.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

    from model.cllm import ModelConfig

Arch = Literal["gpt2", "llama", "gpt_neox"]


def _halves(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """q or k rows (C, ...) of each head from our RoPE pairs (2m, 2m+1) to HF's halves (m,
    m + hs/2): the permutation of HF's convert_llama_weights_to_hf.py."""
    C = w.shape[0]
    return w.reshape(n_head, C // n_head // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


class _Weights:
    """Our state dict, read by layer, with zeros for the biases a model without them lacks."""

    def __init__(self, state: dict[str, torch.Tensor], cfg: ModelConfig) -> None:
        self.state, self.cfg = state, cfg

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.state[name]

    def bias(self, layer: str, size: int) -> torch.Tensor:
        import torch

        found = self.state.get(f"{layer}.bias")
        return found if found is not None else torch.zeros(size)

    def qkv(self, i: int, kind: str) -> list[torch.Tensor]:
        """The q, k, v parts (C, ...) of block i's c_attn weight or bias."""
        C = self.cfg.n_embd
        fused = self.state[f"blocks.{i}.attn.c_attn.{kind}"]
        return list(fused.split(C, dim=0))


def _gpt2(w: _Weights, cfg: ModelConfig, linear: bool) -> dict[str, torch.Tensor]:
    """GPT2LMHeadModel's tensors; its Conv1D weights are (in, out) unless `linear` (GGUF)."""
    C = cfg.n_embd

    def t(x: torch.Tensor) -> torch.Tensor:
        return x if linear else x.t().contiguous()

    out = {"transformer.wte.weight": w["wte.weight"], "transformer.wpe.weight": w["wpe.weight"],
           "transformer.ln_f.weight": w["ln_f.weight"],
           "transformer.ln_f.bias": w.bias("ln_f", C)}
    for i in range(cfg.n_layer):
        ours, hf = f"blocks.{i}.", f"transformer.h.{i}."
        for norm in ("ln_1", "ln_2"):
            out[f"{hf}{norm}.weight"] = w[f"{ours}{norm}.weight"]
            out[f"{hf}{norm}.bias"] = w.bias(ours + norm, C)
        for layer, size in (("attn.c_attn", 3 * C), ("attn.c_proj", C), ("mlp.c_fc", 4 * C),
                            ("mlp.c_proj", C)):
            out[f"{hf}{layer}.weight"] = t(w[f"{ours}{layer}.weight"])
            out[f"{hf}{layer}.bias"] = w.bias(ours + layer, size)
    return out


def _llama(w: _Weights, cfg: ModelConfig, pairs: bool) -> dict[str, torch.Tensor]:
    """LlamaForCausalLM's tensors; q and k rows in HF's halves unless `pairs` (GGUF)."""

    def rope(x: torch.Tensor) -> torch.Tensor:
        return x if pairs else _halves(x, cfg.n_head)

    out = {"model.embed_tokens.weight": w["wte.weight"], "model.norm.weight": w["ln_f.weight"]}
    for i in range(cfg.n_layer):
        ours, hf = f"blocks.{i}.", f"model.layers.{i}."
        out[f"{hf}input_layernorm.weight"] = w[f"{ours}ln_1.weight"]
        out[f"{hf}post_attention_layernorm.weight"] = w[f"{ours}ln_2.weight"]
        kinds = ("weight", "bias") if cfg.bias else ("weight",)
        for kind in kinds:
            q, k, v = w.qkv(i, kind)
            out[f"{hf}self_attn.q_proj.{kind}"] = rope(q)
            out[f"{hf}self_attn.k_proj.{kind}"] = rope(k)
            out[f"{hf}self_attn.v_proj.{kind}"] = v
            for theirs, mine in (("self_attn.o_proj", "attn.c_proj"),
                                 ("mlp.gate_proj", "mlp.c_gate"), ("mlp.up_proj", "mlp.c_fc"),
                                 ("mlp.down_proj", "mlp.c_proj")):
                out[f"{hf}{theirs}.{kind}"] = w[f"{ours}{mine}.{kind}"]
    return out


def _gpt_neox(w: _Weights, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """GPTNeoXForCausalLM's tensors: its query_key_value holds [q; k; v] head by head."""
    import torch

    C, nh = cfg.n_embd, cfg.n_head
    out = {"gpt_neox.embed_in.weight": w["wte.weight"],
           "gpt_neox.final_layer_norm.weight": w["ln_f.weight"],
           "gpt_neox.final_layer_norm.bias": w.bias("ln_f", C)}
    for i in range(cfg.n_layer):
        ours, hf = f"blocks.{i}.", f"gpt_neox.layers.{i}."
        for theirs, mine in (("input_layernorm", "ln_1"), ("post_attention_layernorm", "ln_2")):
            out[f"{hf}{theirs}.weight"] = w[f"{ours}{mine}.weight"]
            out[f"{hf}{theirs}.bias"] = w.bias(ours + mine, C)
        for kind in ("weight", "bias") if cfg.bias else ("weight",):
            q, k, v = w.qkv(i, kind)
            heads = [_halves(q, nh), _halves(k, nh), v]  # each (C, ...)
            out[f"{hf}attention.query_key_value.{kind}"] = torch.stack(
                [x.reshape(nh, C // nh, *x.shape[1:]) for x in heads], dim=1).reshape(
                3 * C, *q.shape[1:])
            out[f"{hf}attention.dense.{kind}"] = w[f"{ours}attn.c_proj.{kind}"]
        out[f"{hf}mlp.dense_h_to_4h.weight"] = w[f"{ours}mlp.c_fc.weight"]
        out[f"{hf}mlp.dense_h_to_4h.bias"] = w.bias(f"{ours}mlp.c_fc", 4 * C)
        out[f"{hf}mlp.dense_4h_to_h.weight"] = w[f"{ours}mlp.c_proj.weight"]
        out[f"{hf}mlp.dense_4h_to_h.bias"] = w.bias(f"{ours}mlp.c_proj", C)
    return out


def hf_tensors(state: dict[str, torch.Tensor], cfg: ModelConfig, arch: Arch, *,
               for_gguf: bool = False) -> dict[str, torch.Tensor]:
    """Our weights under the architecture's transformers names, in its layout; `for_gguf`:
    as llama.cpp's converter hands them on (Linear layout, RoPE pairs as ours). The head is
    tied to the embedding, so it is not among them."""
    w = _Weights({k: v.float() for k, v in state.items()}, cfg)
    if arch == "gpt2":
        return _gpt2(w, cfg, linear=for_gguf)
    if arch == "llama":
        return _llama(w, cfg, pairs=for_gguf)
    return _gpt_neox(w, cfg)
