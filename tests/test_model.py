"""The CLLM model: gradients (gradcheck for every option), causality, the crystalline formulas."""

from __future__ import annotations

import math
import re

import pytest
import torch

from model.cllm import (
    CLLM,
    PHI,
    ModelConfig,
    lattice_embedding,
    mlp_hidden,
    nth_primes,
    position_table,
    twelvefold_tables,
)

OPTIONS = [
    {},
    {"norm": "rmsnorm"},
    {"bias": True},
    {"position": "rope"},
    {"position": "sinusoidal"},
    {"position": "prime"},
    {"position": "clock"},
    {"position": "spiral"},
    {"embedding_init": "lattice", "lattice_scale": 0.05},
    {"symmetry": "twelvefold"},
    {"position": "spiral", "embedding_init": "lattice", "symmetry": "twelvefold",
     "norm": "rmsnorm"},
    {"mlp": "swiglu"},
    {"mlp": "swiglu", "norm": "rmsnorm", "position": "rope"},  # the Llama recipe
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**options: object) -> ModelConfig:
    return ModelConfig(**{"vocab_size": 40, "n_layer": 1, "n_head": 2, "n_embd": 8,
                          "block_size": 6, **options})


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(map(str, o.values())) or
                         "default")
def test_gradcheck_float64_for_every_option(options: dict) -> None:
    torch.manual_seed(0)
    model = CLLM(tiny(**options)).double()
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for _, p in model.named_parameters())
    idx = torch.randint(0, 40, (2, 6))
    idx[0, :5] = torch.arange(3, 8)  # ids of several twelvefold groups in one sequence
    targets = torch.randint(0, 40, (2, 6))

    def loss_of(*tensors: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, dict(zip(names, tensors, strict=True)),
                                         (idx, targets))
        return out[1]

    assert torch.autograd.gradcheck(loss_of, params, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("options", OPTIONS[:9:2], ids=lambda o: ",".join(map(str, o.values()))
                         or "default")
def test_outputs_at_a_position_ignore_later_tokens(options: dict) -> None:
    torch.manual_seed(0)
    model = CLLM(tiny(**options)).eval()
    a = torch.randint(0, 40, (1, 6))
    b = a.clone()
    b[0, 4:] = (a[0, 4:] + 1) % 40
    la, _ = model(a)
    lb, _ = model(b)
    assert torch.allclose(la[0, :4], lb[0, :4], atol=1e-6)
    assert not torch.allclose(la[0, 4:], lb[0, 4:], atol=1e-6)


def _counts(groups: list[dict]) -> tuple[int, int]:
    """(decayed, not decayed) parameter counts of AdamW groups."""
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    return (sum(p.numel() for p in decay["params"]), sum(p.numel() for p in no_decay["params"]))


@pytest.mark.parametrize("decay_embeddings", [True, False])
@pytest.mark.parametrize("tie", [True, False])
def test_decay_groups_are_what_train_decay_embeddings_says(decay_embeddings: bool,
                                                           tie: bool) -> None:
    V, T, C, L = 40, 6, 8, 2
    model = CLLM(tiny(n_layer=L, bias=True, tie_embeddings=tie))
    assert (model.lm_head.weight is model.wte.weight) == tie
    matrices = L * (3 * C * C + C * C + 4 * C * C + 4 * C * C)  # c_attn, c_proj, c_fc, c_proj
    # ln_1, c_attn, c_proj, ln_2, c_fc, c_proj (weights of norms, biases); ln_f
    vectors = L * (2 * C + 3 * C + C + 2 * C + 4 * C + C) + 2 * C
    head = 0 if tie else V * C  # an untied head is a weight matrix: always decayed
    embeddings = V * C + T * C  # token (the tied head) and learned positions
    decayed, kept = _counts(model.param_groups(0.1, decay_embeddings=decay_embeddings))
    if decay_embeddings:  # nanoGPT: every 2-D parameter
        assert (decayed, kept) == (matrices + head + embeddings, vectors)
    else:
        assert (decayed, kept) == (matrices + head, vectors + embeddings)
    assert decayed + kept == model.num_params()


def test_rope_models_have_no_position_table_to_decay() -> None:
    model = CLLM(tiny(position="rope", norm="rmsnorm", mlp="swiglu"))
    decayed, kept = _counts(model.param_groups(0.1, decay_embeddings=False))
    assert kept == 40 * 8 + (2 * 1 + 1) * 8  # wte, and the RMSNorm weights
    assert decayed + kept == model.num_params()


@pytest.mark.parametrize("options", [{}, {"mlp": "swiglu"}, {"norm": "rmsnorm"}])
@pytest.mark.parametrize("n_layer", [1, 6])
def test_init_std_per_kind_of_weight_and_the_residual_scaling(options: dict,
                                                              n_layer: int) -> None:
    """GPT-2's init: every matrix and embedding N(0, 0.02), the residual projections (the
    attention's and the MLP's c_proj) N(0, 0.02 / sqrt(2 n_layer)), biases 0, norms 1."""
    torch.manual_seed(0)
    model = CLLM(ModelConfig(vocab_size=1000, n_layer=n_layer, n_head=4, n_embd=128,
                             block_size=64, bias=True, **options))
    residual = [p.std().item() for n, p in model.named_parameters()
                if n.endswith("c_proj.weight")]
    matrices = [p.std().item() for n, p in model.named_parameters()
                if p.dim() == 2 and not n.endswith("c_proj.weight")]
    assert residual == pytest.approx([0.02 / math.sqrt(2 * n_layer)] * 2 * n_layer, rel=0.05)
    assert len(matrices) == 2 + n_layer * (3 if options.get("mlp") == "swiglu" else 2)
    assert matrices == pytest.approx([0.02] * len(matrices), rel=0.05)
    for name, p in model.named_parameters():
        if p.dim() == 1:
            assert torch.equal(p, torch.full_like(p, 0.0 if name.endswith("bias") else 1.0))


def test_an_untied_head_has_its_own_init_and_the_lattice_reaches_the_input_only() -> None:
    shape = {"vocab_size": 400, "n_embd": 64, "embedding_init": "lattice"}
    tied, untied = CLLM(tiny(**shape)), CLLM(tiny(**shape, tie_embeddings=False))
    lattice = lattice_embedding(400, 64)
    assert torch.allclose(tied.lm_head.weight.double(), lattice, atol=1e-7)
    assert torch.allclose(untied.wte.weight.double(), lattice, atol=1e-7)
    assert untied.lm_head.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert untied.num_params() == tied.num_params() + 400 * 64


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(map(str, o.values())) or
                         "default")
def test_decoding_with_the_cache_gives_the_logits_of_the_whole_sequence(options: dict) -> None:
    torch.manual_seed(0)
    model = CLLM(tiny(**options)).eval()
    idx = torch.randint(0, 40, (2, 6))
    whole, _ = model(idx)  # (2, 6, V)
    cache = model.new_cache(batch=2)
    first = model.decode(idx[:, :2], cache)  # a prompt of two, then one token at a time
    steps = [first] + [model.decode(idx[:, t:t + 1], cache) for t in range(2, 5)]
    assert cache.length == 5 and cache.room == 1
    both = model.decode(idx[:, 5:], cache)
    assert torch.allclose(torch.stack([*steps, both], dim=1), whole[:, 1:], atol=1e-5)
    cache.reset()
    chunked = [model.decode(idx[:, :3], cache), model.decode(idx[:, 3:], cache)]
    assert torch.allclose(chunked[1], whole[:, -1], atol=1e-5)  # several new after the cached
    with pytest.raises(ValueError, match="longer than block_size"):
        model.decode(idx[:, :1], cache)


def test_a_too_long_sequence_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than block_size"):
        CLLM(tiny())(torch.zeros(1, 7, dtype=torch.long))


def test_the_swiglu_mlp_gates_and_holds_what_the_gelu_one_does() -> None:
    torch.manual_seed(0)
    gelu, swiglu = CLLM(tiny(n_embd=48)), CLLM(tiny(n_embd=48, mlp="swiglu"))
    mlp = swiglu.blocks[0].mlp
    assert mlp_hidden(swiglu.cfg) == 128 and mlp.c_gate.weight.shape == (128, 48)
    assert abs(swiglu.num_params() - gelu.num_params()) <= 3 * 8 * 48  # the rounding to 8
    x = torch.randn(2, 3, 48)
    by_hand = mlp.c_proj(torch.nn.functional.silu(mlp.c_gate(x)) * mlp.c_fc(x))
    assert torch.allclose(mlp(x), by_hand)
    with pytest.raises(ValueError, match=re.escape("train.mlp must be gelu | swiglu")):
        ModelConfig(vocab_size=10, mlp="relu")


def test_odd_widths_are_refused_where_pairs_are_rotated() -> None:
    with pytest.raises(ValueError, match="even"):
        ModelConfig(vocab_size=10, n_head=1, n_embd=7, position="spiral")
    with pytest.raises(ValueError, match="head size"):
        ModelConfig(vocab_size=10, n_head=2, n_embd=6, position="rope")


# --- the crystalline formulas -----------------------------------------------------------------


def test_lattice_matches_the_formula_at_hand_computed_points() -> None:
    table = lattice_embedding(300, 16)
    # id 13: ring 1, q = 1, R = 60, θ = (1 - 15) 2π/60, g = 1; dimension 2: PHI[2] = 31
    theta = (1 - 15) * 2 * math.pi / 60
    expected = math.tanh(3 ** (1 + 1 / 60) * math.cos(theta * PHI[2]) * math.cos(2 * math.pi / 12)
                         * math.tanh(1 + 0.1 + 0.02) / 100)
    assert table[13, 2].item() == pytest.approx(expected, rel=1e-12)
    # id 250: ring 4, q = 18, R = 1000, θ = q 2π/1000, g = 250 mod 12 = 10
    theta = 18 * 2 * math.pi / 1000
    expected = math.tanh(3 ** (4 + 18 / 1000) * math.cos(theta * PHI[5]) *
                         math.cos(2 * math.pi * 10 / 12) * math.tanh(1 + 0.4 + 0.05) / 100)
    assert table[250, 5].item() == pytest.approx(expected, rel=1e-12)


def test_lattice_rows_saturate_for_large_ids_and_vanish_for_groups_3_and_9() -> None:
    table = lattice_embedding(6000, 24)
    big = table[5800:6000]
    live = big[(torch.arange(5800, 6000) % 12 != 3) & (torch.arange(5800, 6000) % 12 != 9)]
    # cos(θ·PHI) can be near zero for a few (row, dim): most entries sit at ±1
    assert (live.abs() > 0.99).float().mean() > 0.8
    groups_3_9 = table[(torch.arange(6000) % 12 == 3) | (torch.arange(6000) % 12 == 9)]
    assert groups_3_9.abs().max() < 1e-10
    assert table[:72].abs().max() < 0.1  # the inner rings (3^(r + q/R) <= 9) stay small


def test_lattice_init_and_scale_reach_the_model() -> None:
    model = CLLM(tiny(embedding_init="lattice", lattice_scale=0.5))
    assert torch.allclose(model.wte.weight.double(), lattice_embedding(40, 8) * 0.5, atol=1e-7)


def test_primes() -> None:
    assert nth_primes(10) == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert nth_primes(1000)[-1] == 7919


def test_position_tables_follow_their_formulas() -> None:
    T, C = 16, 8
    golden = (1 + math.sqrt(5)) / 2
    spiral = position_table("spiral", T, C)
    t, d = 5, 3  # odd d: sin, f = 2
    assert spiral[t, d].item() == pytest.approx(
        math.sin(2 * 2 * math.pi * t / golden**2) * (1 + 0.1 * math.sqrt(t)))
    clock = position_table("clock", T, C)
    t, d = 13, 0  # pair 0 gets the extra term
    alpha = 2 * math.pi * (t % 12) / 12
    assert clock[t, d].item() == pytest.approx(
        math.cos(alpha) * (1 + 0.2 * math.log(t + 1)) + 0.1 * math.cos(2 * math.pi * t / T))
    t, d = 13, 2  # pair 1: no extra term
    assert clock[t, d].item() == pytest.approx(math.cos(2 * alpha) * (1 + 0.2 * math.log(t + 1)))
    prime = position_table("prime", T, C)
    t, d = 4, 3  # P = 11, P_max = 53
    beta = 2 * math.pi * 11 / 1000
    assert prime[t, d].item() == pytest.approx(
        math.sin(4 * beta) * (0.5 + 0.5 * math.log(11) / math.log(53)) +
        0.1 * math.cos(2 * math.pi * 11 / 12))
    assert clock[0:12].shape == (12, C) and not torch.equal(clock[1], clock[13])


@pytest.mark.parametrize("kind", ["sinusoidal", "prime", "clock", "spiral"])
def test_fixed_position_rows_have_the_typical_embedding_norm(kind: str) -> None:
    model = CLLM(tiny(position=kind, n_embd=16, n_head=2))
    norms = model.pos_table.norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, 0.02 * math.sqrt(16)), rtol=1e-5)
    lattice = CLLM(tiny(position=kind, embedding_init="lattice", n_embd=16, n_head=2))
    expected = lattice_embedding(40, 16).norm(dim=1).mean().item()
    assert lattice.pos_table.norm(dim=1).mean().item() == pytest.approx(expected, rel=1e-5)


def test_twelvefold_transforms_each_group_as_specified() -> None:
    C = 6
    model = CLLM(tiny(n_embd=C, n_head=1, symmetry="twelvefold", position="rope"))
    x = torch.arange(1, C + 1, dtype=torch.float32)
    with torch.no_grad():
        model.wte.weight[:] = x  # every token's row is x
    out = model.embed(torch.arange(24)[None, :])[0]  # (24, C)

    def rotated(g: int) -> torch.Tensor:
        a = 2 * math.pi * g / 12
        xe, xo = x[0::2], x[1::2]
        return torch.stack((xe * math.cos(a) - xo * math.sin(a),
                            xe * math.sin(a) + xo * math.cos(a)), dim=-1).flatten()

    assert torch.allclose(out[0], x) and torch.allclose(out[12], x)
    for g in (1, 5, 7, 11):
        assert torch.allclose(out[g], rotated(g), atol=1e-5)
    for g in (2, 4, 8, 10):
        expect = rotated(g)
        expect[0] = -expect[0]
        assert torch.allclose(out[g], expect, atol=1e-5)
    for g in (3, 9):
        assert torch.allclose(out[g], rotated(g) * 1.1, atol=1e-5)
    six = x.clone()
    six[:2] = -six[:2]
    assert torch.allclose(out[6], six) and torch.allclose(out[18], six)
    cos, sin, scale = twelvefold_tables(C)
    assert cos.shape == (12, C // 2) and scale.shape == (12, C)


def test_rope_scores_depend_on_relative_position_only() -> None:
    from model.cllm import rope_tables, rotate_pairs

    cos, sin = rope_tables(32, 8)
    q, k = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)

    def score(tq: int, tk: int) -> float:
        return float(rotate_pairs(q, cos[tq], sin[tq]) @ rotate_pairs(k, cos[tk], sin[tk]))

    assert score(7, 3) == pytest.approx(score(20, 16), rel=1e-9)
    assert score(7, 3) != pytest.approx(score(7, 5), rel=1e-3)


def test_a_tiny_model_memorises_a_short_sequence() -> None:
    torch.manual_seed(0)
    seq = torch.tensor([[5, 17, 3, 29, 11, 2, 23, 7, 31, 13, 19, 37]])
    model = CLLM(ModelConfig(vocab_size=40, n_layer=1, n_head=2, n_embd=32, block_size=12))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        _, loss = model(seq[:, :-1], seq[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    logits, _ = model(seq[:, :-1])
    assert loss.item() < 0.05
    assert torch.equal(logits.argmax(-1), seq[:, 1:])


@pytest.mark.parametrize(("rate", "tried"), [
    (1e11, [256, 512, 1024, 2048]),  # a CPU of AVX-512 or AVX2 class, fp32
    (1e10, [256, 512, 1024]),  # one 2048 product (17 GFLOP) would take 1.7 s > 5 x 0.3 s
    (1.3e9, [256, 512]),  # bf16 without native support: one 1024 product 1.7 s
])
def test_the_matmul_peak_skips_the_sizes_it_has_no_time_for(
        monkeypatch: pytest.MonkeyPatch, rate: float, tried: list[int]) -> None:
    from model import flops

    sizes: list[int] = []

    def timed(device: str, dtype_name: str, n: int, seconds: float) -> float:
        sizes.append(n)
        return rate

    monkeypatch.setattr(flops, "_timed_matmul", timed)
    assert flops.matmul_peak.__wrapped__("cpu", "bfloat16") == rate
    assert sizes == tried
