"""Language identification: py3langid (langid.py's model of 97 languages, in its wheel: no
download), on an evenly spread sample of the text, for the clean stage's `language` filter.

Codes are ISO 639-1 as langid.py gives them; the score is its normalised probability (0..1).
"""

from __future__ import annotations

import functools
from typing import Any

REASON = "language"  # the drop reason the filter counts
SAMPLE_CHARS = 2000  # identified on at most this many characters: the score saturates long
SAMPLE_WINDOWS = 4  # before, and windows spread over the text catch a body after a header


def sample(text: str, chars: int = SAMPLE_CHARS, windows: int = SAMPLE_WINDOWS) -> str:
    """`windows` slices of `chars // windows` characters spread evenly over `text` (the text
    itself when it is no longer than `chars`)."""
    if len(text) <= chars:
        return text
    width = chars // windows
    step = (len(text) - width) / (windows - 1)
    return "\n".join(text[round(i * step):round(i * step) + width] for i in range(windows))


@functools.cache
def _identifier() -> Any:
    """The model, loaded once per process (about 4 s: it is unpacked from the wheel)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, score in 0..1) of the text's language; ("", 0.0) for no letters."""
    if not any(c.isalpha() for c in text[:SAMPLE_CHARS * 4]):
        return "", 0.0
    code, score = _identifier().classify(sample(text))
    return code, float(score)


def language_drop(text: str, languages: list[str], min_score: float
                  ) -> tuple[str, float, str | None]:
    """(code, score, why it is dropped or None) for a document under `clean.languages`."""
    code, score = identify(text)
    if code not in languages:
        return code, score, f"{code or 'no language'} ({score:.2f}) not in {languages}"
    if score < min_score:
        return code, score, f"{code} score {score:.2f} < {min_score}"
    return code, score, None
