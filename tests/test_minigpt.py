"""bench/minigpt.py, the reference GPT: nanoGPT's recipe (init, decay groups, lr) and it learns."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load_minigpt():
    spec = importlib.util.spec_from_file_location("minigpt", BENCH / "minigpt.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("minigpt", module)
    spec.loader.exec_module(module)
    return module


minigpt = _load_minigpt()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(n_layer: int = 3, **kw):
    torch.manual_seed(0)
    return minigpt.MiniGPT(vocab_size=kw.get("vocab_size", 300), block_size=32,
                           n_layer=n_layer, n_head=4, n_embd=kw.get("n_embd", 64))


def test_init_std_per_kind_of_weight_is_gpt2s() -> None:
    model = _model(n_layer=6, vocab_size=4000, n_embd=128)
    residual = 0.02 / math.sqrt(2 * 6)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            assert p.std().item() == pytest.approx(residual, rel=0.05), name
        elif p.dim() == 2:  # c_attn, c_fc, the tied wte/head, wpe
            assert p.std().item() == pytest.approx(0.02, rel=0.05), name
        else:  # LayerNorm weights
            assert torch.equal(p, torch.ones_like(p)), name
    assert model.wte.weight is model.lm_head.weight


def test_every_2d_parameter_is_decayed_and_nothing_else() -> None:
    model = _model()
    decay, no_decay = model.configure_optimizer(weight_decay=0.1, lr=1e-3).param_groups
    n = {"decay": sum(p.numel() for p in decay["params"]),
         "no_decay": sum(p.numel() for p in no_decay["params"])}
    V, T, C, L = 300, 32, 64, 3
    # wte/head (tied, once), wpe, and per layer c_attn, attn c_proj, c_fc, mlp c_proj
    assert n["decay"] == V * C + T * C + L * (3 * C * C + C * C + 4 * C * C + 4 * C * C)
    assert n["no_decay"] == (2 * L + 1) * C  # ln_1, ln_2 per layer, ln_f (no biases)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert n["decay"] + n["no_decay"] == model.num_params()


def test_nanogpt_lr_warms_up_then_follows_the_cosine_to_min_lr() -> None:
    lr = [minigpt.nanogpt_lr(s, lr=1e-3, min_lr=1e-4, warmup=10, decay_steps=110)
          for s in range(120)]
    assert lr[0] == pytest.approx(1e-3 / 11) and lr[10] == pytest.approx(1e-3)
    assert lr[60] == pytest.approx(5.5e-4)  # half way: the mean of lr and min_lr
    assert lr[110] == pytest.approx(1e-4) and lr[119] == 1e-4
    assert all(a >= b for a, b in zip(lr[10:], lr[11:], strict=False))


def test_outputs_at_a_position_ignore_later_tokens() -> None:
    model = _model().eval()
    idx = torch.randint(0, 300, (2, 16))
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 300
    logits, loss = model(idx)
    assert logits.shape == (2, 16, 300) and loss is None
    assert torch.allclose(logits[:, :10], model(changed)[0][:, :10], atol=1e-6)


def test_it_memorises_a_short_sequence() -> None:
    model = _model(n_layer=1, n_embd=32)
    opt = model.configure_optimizer(weight_decay=0.0, lr=1e-2)
    seq = torch.randint(0, 300, (1, 17))
    x, y = seq[:, :-1], seq[:, 1:]
    first = float(model(x, y)[1].detach())
    for _ in range(100):
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert first == pytest.approx(math.log(300), abs=0.3)  # starts near uniform
    assert float(model(x, y)[1].detach()) < 0.1
