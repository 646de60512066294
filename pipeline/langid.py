"""Language identification: py3langid (langid.py's model of 97 languages, in its wheel: no
download), on an evenly spread sample of the text. The clean stage identifies every document
it keeps (into `lang` and `stats["lang_score"]`), whether or not `clean.languages` filters.

A document of several pages (a PDF) is identified page by page, on a shorter sample of each,
into `page_info[i].lang`; the document's language is the one most of its letters are in (a
bilingual manual of 6 English and 4 German pages is "en", its pages say which are "de").

Codes are ISO 639-1 as langid.py gives them; the score is its normalised probability (0..1).
The model's time grows with the characters it reads (about 2 us each), so samples are short:
600 characters in 3 windows identify ~1,500-character documents as well as their whole text
(bench/langid.py).
"""

from __future__ import annotations

import functools
import io
import logging
import zipfile
from array import array
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import atomic_write_bytes
from pipeline.records import Document, page_ends
from pipeline.text import letter_count
from pipeline.usercache import cache_dir

log = logging.getLogger(__name__)

REASON = "language"  # the drop reason the filter counts
SAMPLE_CHARS = 600  # a document is identified on at most this many characters, in
SAMPLE_WINDOWS = 3  # windows spread over the text: a body after a header in another decides
PAGE_SAMPLE_CHARS = 200  # per page of a paged document, in two windows
PAGE_MIN_LETTERS = 20  # a page with fewer letters (a figure, a blank page) gets no language


def sample(text: str, chars: int = SAMPLE_CHARS, windows: int = SAMPLE_WINDOWS) -> str:
    """`windows` slices of `chars // windows` characters spread evenly over `text` (the text
    itself when it is no longer than `chars`)."""
    if len(text) <= chars:
        return text
    width = chars // windows
    step = (len(text) - width) / (windows - 1)
    return "\n".join(text[round(i * step):round(i * step) + width] for i in range(windows))


def model_cache() -> Path:
    """Where the unpacked model is kept between processes (the per-user cache folder)."""
    return cache_dir() / f"py3langid-{version('py3langid')}-model.npz"


@functools.cache
def _identifier() -> Any:
    """The model, loaded once per process. The wheel's copy is LZMA-packed (68 MB unpacked,
    4-6 s to unpack, which every process and pool worker would pay); it is unpacked once into
    the cache folder (`model_cache`) and read from there in about half a second."""
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier
    from py3langid.modelio import load_model

    cache = model_cache()
    try:
        with np.load(cache, allow_pickle=False) as data:
            ptc, pc, classes = data["ptc"], data["pc"], data["classes"].tolist()
            nextmove, row = _array(data["nextmove"]), _array(data["nextmove_row"])
            output = data["out_feat"].tolist()
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # none, or damaged
        ptc, pc, classes, nextmove, row, output = load_model(MODEL_DIR / MODEL_FILE)
        _save_model(cache, ptc, pc, classes, nextmove, row, output)
    return LanguageIdentifier(np.asarray(ptc), np.asarray(pc), classes, nextmove, output,
                              norm_probs=True, tk_row=row)


def _array(values: np.ndarray) -> array:
    """A numpy array of unsigned ints as the stdlib array py3langid's DFA walk indexes."""
    out = array({2: "H", 4: "I", 8: "L"}[values.dtype.itemsize])
    out.frombytes(np.ascontiguousarray(values).tobytes())
    return out


def _save_model(path: Path, ptc: Any, pc: Any, classes: list[str], nextmove: array,
                row: array, output: list[int]) -> None:
    """The unpacked model as an uncompressed .npz, atomically; a folder that cannot be written
    only costs the next process the unpacking again."""
    buffer = io.BytesIO()
    np.savez(buffer, ptc=ptc, pc=pc, classes=np.array(classes),
             nextmove=np.frombuffer(nextmove, dtype=f"u{nextmove.itemsize}"),
             nextmove_row=np.frombuffer(row, dtype=f"u{row.itemsize}"),
             out_feat=np.asarray(output, dtype=np.int32))
    try:
        atomic_write_bytes(path, buffer.getvalue(), durable=False)
    except OSError as e:
        log.info("langid: cannot keep the unpacked model in %s (%s)", path.parent, e)


def identify(text: str, chars: int = SAMPLE_CHARS, windows: int = SAMPLE_WINDOWS
             ) -> tuple[str, float]:
    """(ISO 639-1 code, score in 0..1) of the text's language; ("", 0.0) for no letters."""
    if not any(c.isalpha() for c in text[:chars * 4]):
        return "", 0.0
    code, score = _identifier().classify(sample(text, chars, windows))
    return code, float(score)


def identify_document(doc: Document) -> tuple[str, float]:
    """Identify the document's language into `doc.lang` (replacing what extraction put there,
    e.g. the OCR languages) and, for several pages, each page's into `page_info`; returns
    (code, score): with pages, the language of most letters and its pages' weighted score."""
    if len(doc.page_info) < 2:
        doc.lang, score = identify(doc.text)
        return doc.lang, score
    ends = page_ends([p.chars for p in doc.page_info], len(doc.text))
    letters: Counter[str] = Counter()
    weighted: Counter[str] = Counter()
    start = 0
    for page, end in zip(doc.page_info, ends, strict=True):
        text = doc.text[start:round(end)]
        start = round(end)
        n = letter_count(text)
        page.lang, score = identify(text, PAGE_SAMPLE_CHARS, 2) if n >= PAGE_MIN_LETTERS \
            else ("", 0.0)
        page.lang_score = round(score, 4) if page.lang else None
        if page.lang:
            letters[page.lang] += n
            weighted[page.lang] += n * score
    if not letters:  # every page too short on its own: the document as a whole
        doc.lang, score = identify(doc.text)
        return doc.lang, score
    doc.lang, n = letters.most_common(1)[0]
    return doc.lang, weighted[doc.lang] / n


def drop_reason(code: str, score: float, languages: list[str], min_score: float) -> str | None:
    """Why a document of this language and score is dropped under `clean.languages`, or None
    (an empty list keeps every language)."""
    if not languages:
        return None
    if code not in languages:
        return f"{code or 'no language'} ({score:.2f}) not in {languages}"
    if score < min_score:
        return f"{code} score {score:.2f} < {min_score}"
    return None


def language_drop(text: str, languages: list[str], min_score: float
                  ) -> tuple[str, float, str | None]:
    """(code, score, why it is dropped or None) for a text under `clean.languages`."""
    code, score = identify(text)
    return code, score, drop_reason(code, score, languages, min_score)
