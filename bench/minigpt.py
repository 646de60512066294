"""An independent minimal GPT with the GPT-2 / nanoGPT recipe: the reference our model is held to.

Written apart from `model/cllm.py` (it imports nothing of ours), after nanoGPT's model.py:
learned positions, LayerNorm, a 4 x n_embd GELU MLP, the head tied to the token embedding,
every weight N(0, 0.02) but the residual projections (`c_proj`), N(0, 0.02 / sqrt(2 n_layer));
AdamW decays every 2-D parameter (the tied embedding/head and the positions included) and
nothing else; fused AdamW where this torch has it for the device.

    model = MiniGPT(vocab_size=4096, block_size=128, n_layer=4, n_head=4, n_embd=256)
    optimizer = model.configure_optimizer(weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95))
    logits, loss = model(idx, targets)            # (B, T, V), mean cross-entropy
    lr = nanogpt_lr(step, lr=1e-3, min_lr=1e-4, warmup=60, decay_steps=600)

Shapes: B batch, T time, C n_embd, nh heads, hs = C // nh, V vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

INIT_STD = 0.02  # GPT-2's init of every weight matrix and embedding


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.n_head = n_head
        self.dropout = dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, n_embd: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))  # (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, dropout, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class MiniGPT(nn.Module):
    """GPT-2 as nanoGPT builds it, from its shape alone."""

    def __init__(self, *, vocab_size: int, block_size: int, n_layer: int, n_head: int,
                 n_embd: int, dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd {n_embd} is not a multiple of n_head {n_head}")
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(Block(n_embd, n_head, dropout, bias) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # tied, the Parameter is the head's (as nanoGPT)
        self.apply(_init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # residual projections, scaled by depth
                nn.init.normal_(p, mean=0.0, std=INIT_STD / math.sqrt(2 * n_layer))

    def num_params(self) -> int:
        """Parameters, the tied embedding/head counted once."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, V) of token ids (B, T) at every position; the mean loss with targets."""
        T = idx.shape[1]
        if T > self.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size "
                             f"{self.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def configure_optimizer(self, *, weight_decay: float, lr: float,
                            betas: tuple[float, float] = (0.9, 0.95),
                            device_type: str = "cpu") -> torch.optim.AdamW:
        """nanoGPT's AdamW: decay on every 2-D parameter (matrices, embeddings), none on the
        rest (norms, biases)."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=betas,
                                     fused=device_type in ("cuda", "cpu", "mps"))
        except (RuntimeError, ValueError):  # no fused kernel for this device or torch
            return torch.optim.AdamW(groups, lr=lr, betas=betas)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)


def nanogpt_lr(step: int, *, lr: float, min_lr: float, warmup: int, decay_steps: int) -> float:
    """nanoGPT's get_lr: linear warm-up over `warmup` steps, cosine to min_lr at decay_steps."""
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if step > decay_steps or decay_steps <= warmup:
        return min_lr
    ratio = (step - warmup) / (decay_steps - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)
