"""Text generation: temperature, top-k, top-p (nucleus), seed, stop at end-of-text; streamed.

`next_token_distribution` is the whole sampling rule, a pure function of the logits, so it can
be checked against a hand-made distribution. `generate_ids` decodes with the model's KV cache
(or, for reference, without it); `stream_text` yields text pieces as they are made, decoded
incrementally (holding back a piece while it ends inside a multi-byte character).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from model.cllm import CLLM, KVCache
    from pipeline.config import SampleConfig

log = logging.getLogger(__name__)

def next_token_distribution(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0,
                            top_p: float = 1.0) -> torch.Tensor:
    """Probabilities (V,) to draw the next token from, given its logits (V,).

    Temperature scales the logits; top-k keeps the k largest; top-p then keeps the most likely
    tokens, in order, until their probability reaches p (the token that crosses p included).
    Temperature 0 puts all mass on the most likely token.
    """
    import torch

    logits = logits.float()
    if temperature == 0:
        probs = torch.zeros_like(logits)
        probs[int(torch.argmax(logits))] = 1.0
        return probs
    logits = logits / temperature
    if 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass of the tokens ahead
        drop = before >= top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        probs = probs / probs.sum()
    return probs


def generate_ids(model: CLLM, prompt: Sequence[int], settings: SampleConfig,
                 eos_id: int | None = None, *, use_cache: bool = True) -> Iterator[int]:
    """Yield new token ids one at a time; the context is the last block_size tokens.

    With the cache (the default) each new token is read once: its keys and values join the
    cache and the head runs on its position alone. When the context is full the window
    slides one token per step, as without the cache: every position of the window changes,
    so its cache is rebuilt from the window's tokens. Without the cache the whole window is
    read again for every token (the reference the cached path must equal, and the bench's
    baseline).
    """
    import torch

    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    ids = list(prompt) or [eos_id if eos_id is not None else 0]
    window = model.cfg.block_size
    model.eval()
    with torch.no_grad():
        cache = model.new_cache() if use_cache else None
        logits = _next_logits(model, ids[-window:], cache, device)
        for _ in range(settings.max_new_tokens):
            probs = next_token_distribution(logits.cpu(), settings.temperature,
                                            settings.top_k, settings.top_p)
            token = int(torch.multinomial(probs, 1, generator=generator))
            if settings.stop_at_eos and token == eos_id:
                return
            yield token
            ids.append(token)
            if cache is not None and cache.room:
                logits = _next_logits(model, [token], cache, device)
            else:  # no cache, or the window slid
                if cache is not None:
                    cache.reset()
                logits = _next_logits(model, ids[-window:], cache, device)


def _next_logits(model: CLLM, tokens: list[int], cache: KVCache | None,
                 device: torch.device) -> torch.Tensor:
    """Logits (V,) of the token after `tokens`: read after the cache's, or alone."""
    import torch

    idx = torch.tensor([tokens], dtype=torch.long, device=device)  # (1, T)
    if cache is not None:
        return model.decode(idx, cache)[0]
    logits, _ = model(idx)  # (1, T, V)
    return logits[0, -1]


def stream_text(model: CLLM, tokenizer: Any, prompt: str, settings: SampleConfig,
                eos_id: int | None = None, new: list[int] | None = None, *,
                use_cache: bool = True) -> Iterator[str]:
    """Yield the continuation of `prompt` as text pieces while it is generated.

    Decoded incrementally (`tokenizers`' DecodeStream: each token once, a piece held back
    while it ends inside a multi-byte character). `new`, when given, receives the generated
    token ids.
    """
    from tokenizers.decoders import DecodeStream

    prompt_ids = tokenizer.encode(prompt).ids if prompt else []
    new = [] if new is None else new
    stream = DecodeStream(skip_special_tokens=False)
    shown: list[str] = []
    for token in generate_ids(model, prompt_ids, settings, eos_id, use_cache=use_cache):
        new.append(token)
        piece = stream.step(tokenizer, token)
        if piece:
            shown.append(piece)
            yield piece
    # what an unfinished character at the very end left held back (shown as U+FFFD)
    text, said = tokenizer.decode(new, skip_special_tokens=False), "".join(shown)
    if len(text) > len(said) and text.startswith(said):
        yield text[len(said):]


@dataclass(slots=True)
class TextGenerator:
    """A checkpoint loaded for generation: model, tokenizer, end-of-text id."""

    model: CLLM
    tokenizer: Any
    eos_id: int
    meta: dict[str, Any]

    @classmethod
    def load(cls, checkpoint: Path, device: str = "auto") -> TextGenerator:
        from model.checkpoint import tokenizer_from_state
        from model.evaluate import load_model
        from model.runtime import resolve_device

        model, meta = load_model(checkpoint, resolve_device(device))
        return cls(model=model, tokenizer=tokenizer_from_state(meta),
                   eos_id=int(meta["tokenizer"]["eos_id"]), meta=meta)

    def stream(self, prompt: str, settings: SampleConfig,
               new: list[int] | None = None) -> Iterator[str]:
        return stream_text(self.model, self.tokenizer, prompt, settings, self.eos_id, new)

    def text(self, prompt: str, settings: SampleConfig) -> str:
        return "".join(self.stream(prompt, settings))
