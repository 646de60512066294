"""Text normalisation and quality filters: every document is kept or dropped with a reason.

Filters run cheapest first and the first that fails names the reason, so each dropped
document is counted once: too_short, too_few_words, low_alpha, symbol_heavy,
repeated_lines, short_lines. Thresholds come from `CleanConfig`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from pipeline.config import CleanConfig
from pipeline.text import (
    NORMAL_FORM,
    collapse_blank_runs,
    letter_count,
    nonspace_count,
    remove_invisible,
    unix_newlines,
)

# Every reason a quality filter gives, in the order the filters run.
REASONS = ("too_short", "too_few_words", "low_alpha", "symbol_heavy", "repeated_lines",
           "short_lines")

# Scripts written without spaces between words: each character counts as a word (as word
# processors count Chinese and Japanese; a Chinese word is 1-2 characters): Han (with its
# extensions and compatibility forms), Hiragana, Katakana and their half-width forms (not
# the katakana middle dot, a punctuation mark).
# Korean puts spaces between words and is counted by them.
_CJK = re.compile("[\u3041-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\u3400-\u4dbf"
                  "\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f]")
_TRAILING_SPACE = re.compile(r"[ \t\u00a0\u3000]+$", re.MULTILINE)
_NOT_DIGIT = re.compile(r"\D+")

# A repeated line counts against a document only when it reads as prose: at least
# `clean.repeated_line_min_words` words, and words at least this share of its tokens.
# Boilerplate that repeats ("Click here to subscribe to our newsletter today!") is prose;
# code repeats by nature (a tutorial shows a module as it grows, "return NULL;" ends every
# function) and short menu lines ("Next topic") are the short_lines filter's to judge.
PROSE_WORD_SHARE = 2 / 3
_WORD_EDGES = "\"'“”‘’«»()[]{}.,;:!?"  # stripped from a token before asking if it is a word


@dataclass(frozen=True, slots=True)
class Keep:
    """The document passed every filter."""


@dataclass(frozen=True, slots=True)
class Drop:
    reason: str  # one of REASONS (or a dedup reason)
    detail: str = ""  # the figure that failed, e.g. "alpha ratio 0.31 < 0.5"


Verdict = Keep | Drop
KEEP = Keep()


def normalize_text(text: str) -> str:
    """The text we train on: NFC, LF line ends, no invisible characters, no trailing spaces,
    at most one blank line in a row, no leading or trailing blank lines."""
    text = unicodedata.normalize(NORMAL_FORM, text)
    text = remove_invisible(unix_newlines(text))
    text = collapse_blank_runs(_TRAILING_SPACE.sub("", text))
    return text.strip("\n ")


@dataclass(frozen=True, slots=True)
class TextStats:
    """The figures the filters look at, computed once per document."""

    chars: int
    words: int
    nonspace: int  # characters that are not whitespace
    letters: int  # str.isalpha characters
    digits: int
    lines: int  # non-empty lines
    line_chars: int  # characters in non-empty lines (stripped)
    # characters in prose lines (see PROSE_WORD_SHARE) equal to an earlier line: weighing by
    # length keeps a repeated short line from counting like a repeated sentence
    repeated_line_chars: int
    short_lines: int  # non-empty lines shorter than the configured length

    @property
    def alpha_ratio(self) -> float:
        """pipeline.text.alpha_ratio of the text (a Document's stats give the same figure)."""
        return self.letters / self.nonspace if self.nonspace else 0.0

    @property
    def symbol_ratio(self) -> float:
        """Punctuation and symbols among non-space characters (neither letter nor digit)."""
        return (self.nonspace - self.letters - self.digits) / self.nonspace if self.nonspace \
            else 0.0

    @property
    def repeated_line_ratio(self) -> float:
        return self.repeated_line_chars / self.line_chars if self.line_chars else 0.0

    @property
    def short_line_ratio(self) -> float:
        return self.short_lines / self.lines if self.lines else 0.0


def reads_as_prose(line: str, min_words: int) -> bool:
    """Whether a (stripped) line has `min_words` words making up most of it; code such as
    `Custom_init(CustomObject *self, PyObject *args)` does not, and at 4 "Methods defined
    here:" is too short. min_words 0: every line counts."""
    if min_words <= 0:
        return True
    tokens = line.split()
    words = sum(1 for token in tokens if token.strip(_WORD_EDGES).isalpha())
    return words >= min_words and words >= PROSE_WORD_SHARE * len(tokens)


def _repeated_chars(lines: list[str], min_words: int) -> int:
    seen: dict[str, bool | None] = {}  # line -> reads as prose (decided once it repeats)
    repeated = 0
    for line in lines:
        if line not in seen:
            seen[line] = None
            continue
        prose = seen[line]
        if prose is None:
            prose = seen[line] = reads_as_prose(line, min_words)
        if prose:
            repeated += len(line)
    return repeated


def word_count(text: str) -> int:
    """Words: runs between spaces, except that each CJK character is a word of its own (and
    in a text with CJK, a run of punctuation alone is none)."""
    if text.isascii():
        return len(text.split())
    cjk = len(_CJK.findall(text))
    if not cjk:
        return len(text.split())
    # what is left between CJK characters: punctuation that clung to them is no word
    rest = _CJK.sub(" ", text).split()
    return cjk + sum(1 for token in rest if any(c.isalnum() for c in token))


def text_stats(text: str, short_line_chars: int, repeated_min_words: int) -> TextStats:
    lines = [stripped for line in text.split("\n") if (stripped := line.strip())]
    return TextStats(
        chars=len(text),
        words=word_count(text),
        nonspace=nonspace_count(text),
        letters=letter_count(text),
        digits=len(_NOT_DIGIT.sub("", text)),
        lines=len(lines),
        line_chars=sum(map(len, lines)),
        repeated_line_chars=_repeated_chars(lines, repeated_min_words),
        short_lines=sum(1 for line in lines if len(line) < short_line_chars),
    )


def quality_verdict(text: str, cfg: CleanConfig) -> Verdict:
    """Keep, or Drop with the reason of the first filter the (normalised) text fails."""
    if len(text) < cfg.min_chars:
        return Drop("too_short", f"{len(text)} chars < {cfg.min_chars}")
    st = text_stats(text, cfg.short_line_chars, cfg.repeated_line_min_words)
    if st.words < cfg.min_words:
        return Drop("too_few_words", f"{st.words} words < {cfg.min_words}")
    if st.alpha_ratio < cfg.min_alpha_ratio:
        return Drop("low_alpha", f"alpha ratio {st.alpha_ratio:.2f} < {cfg.min_alpha_ratio}")
    if st.symbol_ratio > cfg.max_symbol_ratio:
        return Drop("symbol_heavy",
                    f"symbol ratio {st.symbol_ratio:.2f} > {cfg.max_symbol_ratio}")
    if st.repeated_line_ratio > cfg.max_repeated_line_ratio:
        return Drop("repeated_lines", f"repeated line ratio {st.repeated_line_ratio:.2f} > "
                                      f"{cfg.max_repeated_line_ratio}")
    if st.short_line_ratio > cfg.max_short_line_ratio:
        return Drop("short_lines", f"short line ratio {st.short_line_ratio:.2f} > "
                                   f"{cfg.max_short_line_ratio}")
    return KEEP
