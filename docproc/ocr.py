"""Tesseract through pytesseract: one run per page gives both the text and the word confidences."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import CorruptInput, EnvironmentProblem, InputTimeout

log = logging.getLogger(__name__)

# Tesseract's OpenMP threads fight each other and the other workers: on 2 cores one page took
# 8.9 s with the default threading and 1.3 s with one thread. Every OCR process sets this.
THREAD_LIMIT = ("OMP_THREAD_LIMIT", "1")
TESSERACT_CMD_ENV = "TESSERACT_CMD"  # path of the tesseract binary when not on PATH
DEFAULT_CMD = "tesseract"  # as pytesseract's default
_LANG_CODE = re.compile(r"^[a-z_]+$")  # a line of --list-langs that names a language
INSTALL_HINT = ("install it with `apt-get install tesseract-ocr` (Debian/Ubuntu; "
                "`brew install tesseract` on macOS), or set TESSERACT_CMD to its path")
TSV_CONFIG = "-c tessedit_create_tsv=1"  # the TSV (word boxes, confidences) beside the text
WORD_LEVEL = "5"  # TSV rows of this level are words

# Tesseract language code -> ISO 639-1, for Document.lang
ISO_LANG = {
    "eng": "en", "deu": "de", "fra": "fr", "spa": "es", "ita": "it", "por": "pt", "nld": "nl",
    "rus": "ru", "pol": "pl", "ces": "cs", "swe": "sv", "dan": "da", "nor": "no", "fin": "fi",
    "tur": "tr", "ell": "el", "ukr": "uk", "hun": "hu", "ron": "ro", "jpn": "ja", "kor": "ko",
    "chi_sim": "zh", "chi_tra": "zh", "ara": "ar", "heb": "he", "hin": "hi", "vie": "vi",
}


@dataclass(frozen=True, slots=True)
class OcrResult:
    text: str
    confidence: float | None  # mean word confidence (0-100) from Tesseract; None: no words
    words: int


def iso_lang(lang: str) -> str:
    """The ISO code of the first Tesseract language in `lang` ("eng+deu" -> "en")."""
    first = lang.split("+")[0]
    return ISO_LANG.get(first, first)


def limit_threads() -> None:
    """For an extraction worker, a process of its own: every Tesseract it starts runs alone."""
    os.environ[THREAD_LIMIT[0]] = THREAD_LIMIT[1]


@contextlib.contextmanager
def _one_tesseract_thread() -> Iterator[None]:
    """The limit for one Tesseract run, the caller's environment back after it: a process
    that OCRs in-process (a legacy tool, `cllm run`) must not hand OMP_THREAD_LIMIT=1 on to
    what it runs next (torch's bf16 LayerNorm on a CPU returns NaN under it)."""
    name, value = THREAD_LIMIT
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _pytesseract() -> Any:
    import pytesseract

    pytesseract.pytesseract.tesseract_cmd = tesseract_cmd()
    return pytesseract


def tesseract_cmd() -> str:
    """The tesseract binary: TESSERACT_CMD, else `tesseract` on PATH (pytesseract runs it)."""
    return os.environ.get(TESSERACT_CMD_ENV) or DEFAULT_CMD


def _not_found() -> EnvironmentProblem:
    return EnvironmentProblem(f"Tesseract is not installed or not found ({tesseract_cmd()!r}); "
                              f"{INSTALL_HINT}")


def tesseract_version() -> str:
    pt = _pytesseract()
    try:
        return str(pt.get_tesseract_version())
    except pt.TesseractNotFoundError:
        raise _not_found() from None


def list_languages() -> list[str]:
    """The installed languages, as `tesseract --list-langs` lists them (pytesseract's
    get_languages, without importing pytesseract: it loads numpy, which with its run made
    the check before a decision run that OCRs nothing 0.15 s of CPU)."""
    try:
        result = subprocess.run([tesseract_cmd(), "--list-langs"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    except OSError:
        raise _not_found() from None
    if result.returncode not in (0, 1):  # 1: tesseract 3.x
        raise _not_found()
    lines = result.stdout.decode("utf-8").split(os.linesep)
    return sorted(lang for lang in map(str.strip, lines) if _LANG_CODE.match(lang))


def language_package(lang: str) -> str:
    """The Debian package that holds a Tesseract language ("chi_sim" -> tesseract-ocr-chi-sim)."""
    return "tesseract-ocr-" + lang.lower().replace("_", "-")


def check_tesseract(lang: str) -> None:
    """Check that Tesseract runs and has every language in `lang` (EnvironmentProblem if not)."""
    _check_tesseract(tesseract_cmd(), lang)


@functools.lru_cache(maxsize=16)
def _check_tesseract(cmd: str, lang: str) -> None:
    have = set(list_languages())
    missing = [code for code in lang.split("+") if code not in have]
    if missing:
        packages = " ".join(language_package(code) for code in missing)
        raise EnvironmentProblem(
            f"Tesseract ({cmd}) has no language data for {'+'.join(missing)} (has: "
            f"{', '.join(sorted(have)) or 'none'}); install it with `apt-get install {packages}`"
        )


def mean_confidence(tsv: str) -> tuple[float | None, int]:
    """(mean word confidence, word count) from Tesseract's TSV output."""
    total, words = 0.0, 0
    for line in tsv.splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) < 12 or cols[0] != WORD_LEVEL or not cols[11].strip():
            continue
        conf = float(cols[10])
        if conf >= 0:
            total += conf
            words += 1
    return (round(total / words, 2) if words else None), words


def ocr_file(image: Path, *, lang: str, psm: int, dpi: int | None, source: str,
             deadline: float | None = None) -> OcrResult:
    """OCR one image file; `deadline` (time.monotonic) bounds the Tesseract run."""
    pt = _pytesseract()
    timeout = 0.0
    if deadline is not None:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise InputTimeout(source, "out of time before OCR of the next page")
    config = f"--psm {psm} {TSV_CONFIG}" + (f" --dpi {dpi}" if dpi else "")
    with tempfile.TemporaryDirectory(prefix="cllm-ocr-") as tmp:
        base = str(Path(tmp) / "out")
        try:
            with _one_tesseract_thread():
                pt.pytesseract.run_tesseract(str(image), base, "txt", lang, config=config,
                                             timeout=timeout)
        except pt.TesseractNotFoundError:
            raise _not_found() from None
        except pt.TesseractError as e:
            if "language" in str(e.message).lower():
                raise EnvironmentProblem(f"Tesseract cannot load language {lang!r}: {e.message}; "
                                         f"install {language_package(lang)}") from None
            raise CorruptInput(source, f"Tesseract could not read the image: {e.message}") from None
        except RuntimeError as e:
            if "timeout" in str(e).lower():
                raise InputTimeout(source, "Tesseract ran out of time (extract.timeout_s)") \
                    from None
            raise
        text = Path(base + ".txt").read_text(encoding="utf-8", errors="replace")
        tsv = Path(base + ".tsv").read_text(encoding="utf-8", errors="replace")
    confidence, words = mean_confidence(tsv)
    return OcrResult(text=text, confidence=confidence, words=words)


def ocr_pixmap(pix: Any, *, lang: str, psm: int, dpi: int, source: str,
               deadline: float | None = None) -> OcrResult:
    """OCR a PyMuPDF pixmap (gray or RGB, no alpha)."""
    from PIL import Image

    mode = "L" if pix.n == 1 else "RGB"
    # a copy of the samples (2 ms): an image over the pixmap's own buffer would keep it
    # exported, and PyMuPDF cannot free a pixmap with a live view
    img = Image.frombuffer(mode, (pix.width, pix.height), pix.samples, "raw", mode,
                           pix.stride, 1)
    return ocr_image(img, lang=lang, psm=psm, dpi=dpi, source=source, deadline=deadline)


def ocr_image(img: Any, *, lang: str, psm: int, dpi: int | None, source: str,
              deadline: float | None = None) -> OcrResult:
    """OCR a PIL image in mode L or RGB, handed to Tesseract as uncompressed TIFF.

    Uncompressed TIFF takes 5 ms a page to write where PNG takes 60-80 ms, and Tesseract
    reads it faster than PNM (1.17 s against 1.30 s of CPU for a 300-dpi page here).
    """
    with tempfile.TemporaryDirectory(prefix="cllm-ocr-") as tmp:
        path = Path(tmp) / "page.tif"
        img.save(path, format="TIFF", **({"dpi": (dpi, dpi)} if dpi else {}))
        return ocr_file(path, lang=lang, psm=psm, dpi=dpi, source=source, deadline=deadline)
