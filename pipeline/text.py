"""Text normalisation shared by extraction (docproc/cleanup.py) and the clean stage
(pipeline/filters.py): the Unicode form, line ends, the characters that are never text, and
what counts as a letter.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

# NFC, not NFKC: NFKC would also fold superscripts, fractions and full-width forms that
# carry meaning.
NORMAL_FORM = "NFC"

# Never text: C0 and C1 control characters except tab and newline (line ends are made LF
# first), the zero-width space, word joiner and BOM, and lone surrogates (not encodable as
# UTF-8). Extraction folds some of these into text first (form feed and vertical tab are
# line breaks to it, see docproc/cleanup.py) and removes more (bidi controls, soft hyphens).
CONTROLS = r"\x00-\x08\x0b-\x1f\x7f-\x9f"
ZERO_WIDTH = "\u200b\u2060\ufeff"
SURROGATES = r"\ud800-\udfff"
INVISIBLE = re.compile(f"[{CONTROLS}{ZERO_WIDTH}{SURROGATES}]")
# the ASCII characters that are not INVISIBLE: what is left of an ASCII text without them
# is its invisible characters (a C loop; the pattern's search tests each character in turn)
_ASCII_VISIBLE = b"\t\n" + bytes(range(0x20, 0x7f))
BLANK_RUNS = re.compile(r"\n{3,}")
# Presence checks as patterns that start with a newline: the regex engine skips to each
# newline in a C loop, where `"\n\n\n" in text` tests most positions (twice as slow on a page,
# which has a newline every 70 characters; the same answer).
_BLANK_RUN = re.compile("\n\n\n")

_ASCII_LETTERS = string.ascii_letters.encode()
# what str.isspace() and str.split() call whitespace among ASCII characters
_ASCII_SPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
_ASCII_RUNS = re.compile(r"[\x00-\x7f]+")


def unix_newlines(text: str) -> str:
    """CR LF and lone CR as LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def remove_invisible(text: str) -> str:
    """The text without the characters of INVISIBLE."""
    if text.isascii() and not text.encode("ascii").translate(None, _ASCII_VISIBLE):
        return text
    return INVISIBLE.sub("", text) if INVISIBLE.search(text) else text


def collapse_blank_runs(text: str) -> str:
    """At most one blank line in a row."""
    return BLANK_RUNS.sub("\n\n", text) if _BLANK_RUN.search(text) else text


def _ascii_part(text: str) -> tuple[bytes, str]:
    """The text's ASCII characters as bytes, to count in C, and its other characters, to test
    one by one (a few in most texts: testing every character of a manual with one accented
    name took 0.4 s a document). The others are what is left without the runs of ASCII:
    half the time of finding each of them."""
    data = text.encode("ascii", "ignore")
    return data, "" if len(data) == len(text) else _ASCII_RUNS.sub("", text)


def letter_count(text: str) -> int:
    """Characters that are letters (str.isalpha)."""
    data, others = _ascii_part(text)
    return len(data) - len(data.translate(None, _ASCII_LETTERS)) + sum(map(str.isalpha, others))


def nonspace_count(text: str) -> int:
    """Characters that are not whitespace (str.isspace)."""
    data, others = _ascii_part(text)
    spaces = len(data) - len(data.translate(None, _ASCII_SPACE)) + sum(map(str.isspace, others))
    return len(text) - spaces


@dataclass(frozen=True, slots=True)
class CharCounts:
    """A text's characters by class, counted together (one pass over its ASCII part)."""

    letters: int  # str.isalpha
    nonspace: int  # not str.isspace
    blanks: int  # spaces and tabs
    newlines: int
    other_spaces: int  # whitespace that is neither (\r, \f, the Unicode spaces, ...)

    @property
    def alpha_ratio(self) -> float:
        """The share of letters among the characters that are not whitespace (0.0 when none)."""
        return self.letters / self.nonspace if self.nonspace else 0.0


def char_counts(text: str) -> CharCounts:
    data, others = _ascii_part(text)
    rest = data.translate(None, _ASCII_LETTERS)  # the whitespace is among what is left
    letters = len(data) - len(rest) + sum(map(str.isalpha, others))
    ascii_spaces = len(rest) - len(rest.translate(None, _ASCII_SPACE))
    unicode_spaces = sum(map(str.isspace, others))
    # counted in what is left (a fifth of a text or less), not in the text
    blanks, newlines = rest.count(b" ") + rest.count(b"\t"), rest.count(b"\n")
    return CharCounts(letters=letters, nonspace=len(text) - ascii_spaces - unicode_spaces,
                      blanks=blanks, newlines=newlines,
                      other_spaces=ascii_spaces - blanks - newlines + unicode_spaces)


def alpha_ratio(text: str) -> float:
    """The share of letters among the characters that are not whitespace (0.0 when none)."""
    return char_counts(text).alpha_ratio


def utf8_length(text: str) -> int:
    """The UTF-8 byte length of `text`, without encoding it when it is ASCII (a flag the
    string carries)."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))
