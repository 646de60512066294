"""The CLLM model: a decoder-only transformer, with the original's "crystalline" ideas as options.

Shapes: B batch, T time (tokens), C = n_embd, nh heads, hs = C // nh head size, V vocabulary.
The crystalline formulas (lattice init, prime/clock/spiral positions, twelvefold symmetry) are
specified in shared/CRYSTALLINE.md; each is off by default.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.config import FIXED_POSITIONS, ModelShape

INIT_STD = 0.02  # nanoGPT/GPT-2 init of every weight matrix and the embeddings
NORM_EPS = 1e-5  # of LayerNorm and RMSNorm (GPT-2's and Llama's)
ROPE_BASE = 10000.0  # RoPE frequencies: pair m turns at ROPE_BASE^(-2m/hs) per position
PHI = (3, 7, 31, 12, 19, 5, 11, 13, 17, 23, 29, 37)  # frequency table, indexed by d mod 12
GOLDEN = (1 + math.sqrt(5)) / 2
# (first id, ring size R, offset of q in θ) of each ring of the lattice "clock"
LATTICE_RINGS = ((0, 12, 3), (12, 60, 15), (72, 60, 15), (132, 100, 25), (232, 1000, 0))


@dataclass(kw_only=True, slots=True)
class ModelConfig(ModelShape):
    """What a model is built from: the [train] section's shape and the shards' vocabulary
    (saved in every checkpoint)."""

    vocab_size: int  # from the shard manifest

    def __post_init__(self) -> None:
        ModelShape.__post_init__(self)  # (zero-argument super() fails in slotted dataclasses)
        if self.vocab_size <= 0:
            raise ValueError(f"vocab_size must be > 0, got {self.vocab_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_train(cls, train: ModelShape, vocab_size: int) -> ModelConfig:
        """The model that the shape keys of a `TrainConfig` describe, for this vocabulary."""
        return cls(vocab_size=vocab_size, **{f.name: getattr(train, f.name)
                                             for f in fields(ModelShape)})

    def shape_differences(self, train: ModelShape) -> dict[str, tuple[Any, Any]]:
        """The shape keys on which `train` differs from this model: key -> (train's, ours)."""
        return {f.name: (getattr(train, f.name), getattr(self, f.name))
                for f in fields(ModelShape) if getattr(train, f.name) != getattr(self, f.name)}


# --- crystalline tables ---------------------------------------------------------------------


def lattice_embedding(vocab_size: int, n_embd: int) -> torch.Tensor:
    """E[i, d] of the clock-lattice formula (CRYSTALLINE.md), float64, shape (V, C)."""
    i = torch.arange(vocab_size, dtype=torch.float64)
    ring = torch.zeros_like(i)
    q = torch.zeros_like(i)
    size = torch.ones_like(i)
    theta = torch.zeros_like(i)
    for r, (first, ring_size, offset) in enumerate(LATTICE_RINGS):
        last = LATTICE_RINGS[r + 1][0] if r + 1 < len(LATTICE_RINGS) else math.inf
        on_ring = (i >= first) & (i < last)
        ring[on_ring] = r
        q[on_ring] = i[on_ring] - first
        size[on_ring] = ring_size
        theta[on_ring] = (i[on_ring] - first - offset) * 2 * math.pi / ring_size
    d = torch.arange(n_embd, dtype=torch.float64)
    phi = torch.tensor(PHI, dtype=torch.float64)[torch.arange(n_embd) % 12]  # (C,)
    g = i.remainder(12)
    magnitude = torch.pow(3.0, ring + q / size)  # (V,)
    wave = torch.cos(theta[:, None] * phi[None, :])  # (V, C)
    group = torch.cos(2 * math.pi * g / 12)  # (V,)
    damp = torch.tanh(1 + 0.1 * ring[:, None] + 0.01 * d[None, :])  # (V, C)
    return torch.tanh(magnitude[:, None] * wave * group[:, None] * damp / 100)


def nth_primes(n: int) -> list[int]:
    """The first n primes (a sieve sized by the prime-number theorem's bound)."""
    limit = max(15, int(n * (math.log(n + 1) + math.log(math.log(n + 2)))) + 10)
    while True:
        sieve = bytearray([1]) * (limit + 1)
        sieve[0:2] = b"\x00\x00"
        for p in range(2, int(limit**0.5) + 1):
            if sieve[p]:
                sieve[p * p :: p] = bytearray(len(range(p * p, limit + 1, p)))
        primes = [p for p in range(limit + 1) if sieve[p]]
        if len(primes) >= n:
            return primes[:n]
        limit *= 2


def _trig_by_parity(angle: torch.Tensor) -> torch.Tensor:
    """cos on even dimensions, sin on odd ones; `angle` is (T, C)."""
    out = torch.cos(angle)
    out[:, 1::2] = torch.sin(angle[:, 1::2])
    return out


def position_table(kind: str, block_size: int, n_embd: int) -> torch.Tensor:
    """A fixed (T, C) position table, float64, rows not yet normalised."""
    t = torch.arange(block_size, dtype=torch.float64)[:, None]  # (T, 1)
    d = torch.arange(n_embd, dtype=torch.float64)[None, :]  # (1, C)
    f = torch.floor(d / 2) + 1
    if kind == "sinusoidal":  # Vaswani et al.: pair k has frequency 10000^(-2k/C)
        freq = torch.pow(10000.0, -2 * torch.floor(d / 2) / n_embd)
        return _trig_by_parity(t * freq)
    if kind == "spiral":
        alpha = 2 * math.pi * t / GOLDEN**2
        return _trig_by_parity(f * alpha) * (1 + 0.1 * torch.sqrt(t))
    if kind == "clock":
        alpha = 2 * math.pi * torch.remainder(t, 12) / 12
        table = _trig_by_parity(f * alpha) * (1 + 0.2 * torch.log(t + 1))
        pair = torch.floor(d / 2)
        every_fourth = (pair.remainder(4) == 0).to(torch.float64)
        extra = 0.1 * _trig_by_parity(2 * math.pi * t * (pair + 1) / block_size)
        return table + every_fourth * extra
    if kind == "prime":
        primes = torch.tensor(nth_primes(block_size), dtype=torch.float64)[:, None]  # (T, 1)
        beta = 2 * math.pi * torch.remainder(primes, 1000) / 1000
        p_max = primes[-1, 0]
        amplitude = 0.5 + 0.5 * torch.log(primes) / torch.log(p_max)
        table = _trig_by_parity((d + 1) * beta) * amplitude
        every_third = (torch.remainder(d, 3) == 0).to(torch.float64)
        return table + every_third * 0.1 * torch.cos(2 * math.pi * torch.remainder(primes, 12) / 12)
    raise ValueError(f"no fixed position table for {kind!r}")


def twelvefold_tables(n_embd: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-group (12, C/2) cos and sin of the pair rotation and a (12, C) scale after it."""
    g = torch.arange(12, dtype=torch.float64)
    rotates = torch.tensor([gi not in (0, 6) for gi in range(12)], dtype=torch.float64)
    alpha = (2 * math.pi * g / 12 * rotates)[:, None].expand(12, n_embd // 2)
    scale = torch.ones(12, n_embd, dtype=torch.float64)
    for gi in (2, 4, 8, 10):
        scale[gi, 0] = -1.0
    for gi in (3, 9):
        scale[gi] = 1.1
    scale[6, :2] = -1.0
    return torch.cos(alpha), torch.sin(alpha), scale


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate every pair (x[2m], x[2m+1]) by the angle whose cos/sin are given (..., C/2)."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


def rope_tables(block_size: int, head_size: int, base: float = ROPE_BASE
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (T, hs/2) of rotary position embeddings (Su et al.), float64."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)
    angles = torch.arange(block_size, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return torch.cos(angles), torch.sin(angles)


# --- the network -----------------------------------------------------------------------------


def _norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.n_embd, eps=NORM_EPS)
    return nn.LayerNorm(cfg.n_embd, eps=NORM_EPS, bias=cfg.bias)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if rope is not None:
            cos, sin = rope  # (T, hs/2)
            q, k = rotate_pairs(q, cos, sin), rotate_pairs(k, cos, sin)
        if cache is None:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        else:
            y = cache.attend(layer, q, k, v)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class KVCache:
    """The keys and values of the tokens a model has read so far, for decoding one token at a
    time: per layer a (B, nh, block_size, hs) buffer filled from position 0. The next tokens
    are at positions `length`, `length` + 1, ...; a full cache has no room for another (the
    window must slide: every position changes, so the cache is rebuilt from the text)."""

    def __init__(self, cfg: ModelConfig, batch: int, device: torch.device,
                 dtype: torch.dtype) -> None:
        shape = (batch, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype)
                       for _ in range(cfg.n_layer)]
        self.length = 0

    @property
    def room(self) -> int:
        return self.keys[0].shape[2] - self.length

    def reset(self) -> None:
        self.length = 0

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
               ) -> torch.Tensor:
        """Store the new tokens' k, v (B, nh, T, hs) after the cached ones; q attends to all
        of them, causally among the new ones. -> (B, nh, T, hs)"""
        T, start = q.shape[2], self.length
        self.keys[layer][:, :, start:start + T] = k
        self.values[layer][:, :, start:start + T] = v
        keys = self.keys[layer][:, :, :start + T]  # (B, nh, start + T, hs)
        values = self.values[layer][:, :, :start + T]
        if T == 1:  # one new token sees every token before it
            return F.scaled_dot_product_attention(q, keys, values)
        if start == 0:
            return F.scaled_dot_product_attention(q, keys, values, is_causal=True)
        mask = torch.ones(T, start + T, dtype=torch.bool, device=q.device).tril(start)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)


def mlp_hidden(cfg: ModelShape) -> int:
    """The MLP's hidden width: 4 C for GELU; for SwiGLU 2/3 of that (its three matrices then
    hold what GELU's two do), rounded up to a multiple of 8, as Llama sizes it."""
    if cfg.mlp == "swiglu":
        return 8 * math.ceil(8 * cfg.n_embd / 3 / 8)
    return 4 * cfg.n_embd


class MLP(nn.Module):
    """GELU (GPT-2): c_proj(gelu(c_fc x)); SwiGLU (Llama): c_proj(silu(c_gate x) * c_fc x)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hidden = mlp_hidden(cfg)
        self.c_gate = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias) if cfg.mlp == "swiglu" \
            else None
        self.c_fc = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias)
        self.c_proj = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.c_gate is None:
            h = F.gelu(self.c_fc(x))  # (B, T, 4C)
        else:
            h = F.silu(self.c_gate(x)) * self.c_fc(x)  # (B, T, hidden)
        return self.dropout(self.c_proj(h))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = _norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = _norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, cache, layer)
        return x + self.mlp(self.ln_2(x))


class CLLM(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.position == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = _norm(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight  # weight tying
        self._register_fixed_tables()
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: scale residual projections by depth
                nn.init.normal_(p, mean=0.0, std=INIT_STD / math.sqrt(2 * cfg.n_layer))
        if cfg.embedding_init == "lattice":
            with torch.no_grad():
                table = lattice_embedding(cfg.vocab_size, cfg.n_embd) * cfg.lattice_scale
                self.wte.weight.copy_(table)

    def _register_fixed_tables(self) -> None:
        """Buffers computed from the config alone (not saved: rebuilt on load)."""
        cfg = self.cfg
        if cfg.position in FIXED_POSITIONS:
            table = position_table(cfg.position, cfg.block_size, cfg.n_embd)
            table = table / table.norm(dim=1, keepdim=True).clamp_min(1e-12)
            self.register_buffer("pos_table", (table * self.typical_embedding_norm()).float(),
                                 persistent=False)  # (T, C)
        if cfg.position == "rope":
            cos, sin = rope_tables(cfg.block_size, cfg.n_embd // cfg.n_head)
            self.register_buffer("rope_cos", cos.float(), persistent=False)  # (T, hs/2)
            self.register_buffer("rope_sin", sin.float(), persistent=False)
        if cfg.symmetry == "twelvefold":
            cos, sin, scale = twelvefold_tables(cfg.n_embd)
            self.register_buffer("sym_cos", cos.float(), persistent=False)  # (12, C/2)
            self.register_buffer("sym_sin", sin.float(), persistent=False)
            self.register_buffer("sym_scale", scale.float(), persistent=False)  # (12, C)

    def typical_embedding_norm(self) -> float:
        """The mean L2 norm of an embedding row at init: what fixed position rows are scaled to."""
        cfg = self.cfg
        if cfg.embedding_init == "lattice":
            table = lattice_embedding(cfg.vocab_size, cfg.n_embd) * cfg.lattice_scale
            return float(table.norm(dim=1).mean())
        return INIT_STD * math.sqrt(cfg.n_embd)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)

    def num_params(self) -> int:
        """Parameters, the tied embedding/head counted once."""
        return sum(p.numel() for p in self.parameters())

    def embed(self, idx: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Token (+ position) embeddings of `idx` (B, T) at positions start.. -> (B, T, C)."""
        positions = slice(start, start + idx.shape[1])
        x = self.wte(idx)  # (B, T, C)
        if self.cfg.symmetry == "twelvefold":
            g = idx.remainder(12)  # (B, T)
            x = rotate_pairs(x, self.sym_cos[g], self.sym_sin[g]) * self.sym_scale[g]
        if self.wpe is not None:
            x = x + self.wpe.weight[positions]  # (T, C) broadcast over B
        elif self.cfg.position in FIXED_POSITIONS:
            x = x + self.pos_table[positions].to(x.dtype)
        return self.drop(x)

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """The final-norm hidden states (B, T, C) of `idx` (B, T): from position 0, or after
        the tokens in `cache` (which then holds these too)."""
        start = cache.length if cache is not None else 0
        T = idx.shape[1]
        if start + T > self.cfg.block_size:
            raise ValueError(f"sequence of {start + T} tokens is longer than block_size "
                             f"{self.cfg.block_size}")
        rope = None
        if self.cfg.position == "rope":
            rope = (self.rope_cos[start:start + T], self.rope_sin[start:start + T])
        x = self.embed(idx, start)
        for layer, block in enumerate(self.blocks):
            x = block(x, rope, cache, layer)
        if cache is not None:
            cache.length += T
        return self.ln_f(x)

    def new_cache(self, batch: int = 1) -> KVCache:
        p = self.wte.weight
        return KVCache(self.cfg, batch, p.device, p.dtype)

    def decode(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits (B, V) of the next token after `idx` (B, T), read after the cached tokens:
        the head runs on the last position only."""
        return self.lm_head(self.hidden(idx, cache)[:, -1])  # (B, V)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, V) for token ids (B, T); with targets (B, T), also the mean loss."""
        logits = self.lm_head(self.hidden(idx))  # (B, T, V)
        if targets is None:
            return logits, None
        flat = logits.view(-1, logits.size(-1))  # (B*T, V)
        if flat.dtype in (torch.bfloat16, torch.float16):  # softmax in fp32 under autocast
            flat = flat.float()
        loss = F.cross_entropy(flat, targets.reshape(-1))
        return logits, loss

    def param_groups(self, weight_decay: float, *, decay_embeddings: bool
                     ) -> list[dict[str, Any]]:
        """AdamW groups: decay on every weight matrix and, with `decay_embeddings`, on the
        embeddings (token, tied head, learned positions) as nanoGPT decays every 2-D
        parameter; never on norms and biases.

        Without it (train.decay_embeddings' default) the embeddings stay out of decay: it keeps
        rare tokens' rows from shrinking, and measured slightly better at equal steps
        (bench/quality.py).
        """
        decay, no_decay = [], []
        embeddings = {id(self.wte.weight)} | ({id(self.wpe.weight)} if self.wpe else set())
        for p in self.parameters():  # parameters() yields the tied weight once
            if not p.requires_grad:
                continue
            decayed = p.dim() >= 2 and (decay_embeddings or id(p) not in embeddings)
            (decay if decayed else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]
