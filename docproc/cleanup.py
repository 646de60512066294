"""Text clean-up every extractor shares: Unicode, hyphenation, running headers, whitespace."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

from pipeline.text import (
    NORMAL_FORM,
    ZERO_WIDTH,
    collapse_blank_runs,
    remove_invisible,
    unix_newlines,
)

# Beyond pipeline.text's invisible characters, extraction maps presentation forms and odd
# spaces, removes what only looks like text, and keeps page and line breaks as newlines.
# Zero-width characters go before NFC, so that letters they separated can compose.
_CHAR_MAP = str.maketrans({
    "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
    "\ufb05": "st", "\ufb06": "st",
    "\u00a0": " ", "\u2002": " ", "\u2003": " ", "\u2007": " ", "\u2009": " ", "\u202f": " ",
    "\u3000": " ",
    "\u00ad": None,  # soft hyphen: a line-break hint, never text
    **dict.fromkeys(ZERO_WIDTH),  # zero-width space, word joiner, BOM
    # bidirectional marks, embeddings, overrides and isolates: invisible, and able to make
    # text read differently from what it holds ("Trojan Source"); invisible math operators
    **dict.fromkeys("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
                    "\u2061\u2062\u2063\u2064\u180e"),
    "\ufffd": None,  # unmapped glyphs: counted by the OCR decision before clean-up
    "\u2028": "\n", "\u2029": "\n\n", "\f": "\n\n", "\v": "\n",
})
_MAPPED = re.compile("[" + re.escape("".join(map(chr, _CHAR_MAP))) + "]")
# runs of blanks inside a line (not single spaces: matching every word gap is slow);
# leading indentation is kept (code, verse)
_INNER_SPACE = re.compile(r"(?<=\S)(?:\t|[ \t]{2,})[ \t]*")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
# " \n" found from the newline, which the regex engine skips to in a C loop (`" \n" in text`
# tests every space: slower on a page, three times on a document)
_SPACE_BEFORE_NEWLINE = re.compile(r"\n(?<= \n)")

# A word broken at a line end: letters, a hyphen, the line break, a lowercase continuation.
# Found from the hyphen: a pattern that starts with the letters is tried at every letter of
# the document (1.7 s of a 1,600-page run of manuals, a quarter of the clean-up, where the
# hyphens take 0.1 s); the same matches, in the same order, as that pattern's.
_LETTER = re.compile(r"[^\W\d_]")
_LETTERS = re.compile(r"[^\W\d_]+")
_BREAK = re.compile(r"-[ \t]*\n")  # the hyphen and line break of a broken word
_MAYBE_BROKEN = re.compile(r"- ?\n")  # "-\n" or "- \n": from the hyphens, as above
_CONTINUATION = re.compile(r"[ \t]*([^\W\d_]+)(\S*)[ \t]*")  # after the break
_INNER_HYPHEN = re.compile(r"-(?=[^\W\d_])")

# Running headers/footers: lines seen at the top or bottom of most pages.
EDGE_LINES = 3  # non-empty lines at each end of a page that may be a header/footer
RUNNING_MIN_PAGES = 3  # fewer pages than this: nothing counts as "repeated"
RUNNING_SHARE = 0.5  # a line on more than this share of pages is running matter
RUNNING_MAX_CHARS = 150  # longer lines are body text even when repeated
_DIGITS = re.compile(r"\d+")
_NOT_ASCII_DIGITS = bytes(range(128)).translate(None, b"0123456789")
# what a plain line (see _plain) may hold: ASCII but digits, '#' and whitespace other than space
_PLAIN_CHARS = bytes(range(128)).translate(None, b"0123456789#\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f")
_ASCII_EDGE_MARKS = " -|"  # the ASCII ones of what a key is stripped of
_ROMAN_LINE = re.compile(r"^[ivxlcdm]+$")
_PAGE_NUMBER_KEY = re.compile(r"^(page|seite|p\.?)?\s*[#]\s*((of|/|von)\s*[#])?$")
PAGE_NUMBER_KEY = "<page-number>"


def normalize_unicode(text: str) -> str:
    """NFC, ligatures and odd spaces folded, invisible and control characters removed."""
    text = unix_newlines(text)
    if text.isascii():  # already NFC, no ligatures: only control characters to handle
        if "\f" in text or "\v" in text:
            text = text.translate(_CHAR_MAP)
        return remove_invisible(text)
    if _MAPPED.search(text):  # translate looks up every character: only where it maps one
        text = text.translate(_CHAR_MAP)
    return remove_invisible(unicodedata.normalize(NORMAL_FORM, text))


def normalize_whitespace(text: str) -> str:
    """Single spaces inside lines (indentation kept), at most one blank line between paragraphs."""
    # each pass only where its pattern can match: most extracted text needs none of them.
    # Lines of blanks need no pass of their own: without the blanks before line ends they
    # are empty lines, which the blank runs' collapse takes.
    tab = "\t" in text
    if tab or "  " in text:
        text = _INNER_SPACE.sub(" ", text)
    if tab or _SPACE_BEFORE_NEWLINE.search(text):
        text = _TRAILING_SPACE.sub("\n", text)
    return collapse_blank_runs(text).strip("\n").rstrip()


def dehyphenate(text: str) -> str:
    """Join words hyphenated across a line break ("exam-\\nple" -> "example").

    A compound that the document also writes with its hyphen elsewhere ("well-known") keeps
    the hyphen. The joined word stays on the first line.
    """
    if not _MAYBE_BROKEN.search(text):
        return text
    hyphenated: set[str] | None = None  # made once, on the first word that needs it
    out: list[str] = []
    done = 0  # text[:done] is in out; no match starts before it
    for brk in _BREAK.finditer(text):
        start = _word_start(text, brk.start(), done)
        more = _CONTINUATION.match(text, brk.end()) if start < brk.start() else None
        if more is None:
            continue
        left, right, end = text[start:brk.start()], more.group(1), more.end()
        if right[0].islower():
            if hyphenated is None:
                hyphenated = _hyphenated_words(text)
            word = f"{left}-{right}" if f"{left}-{right}".lower() in hyphenated else left + right
            word += more.group(2)  # punctuation stays with its word
            at_line_end = end >= len(text) or text[end] == "\n"
            out += [text[done:start], word if at_line_end else word + "\n"]
        else:
            out.append(text[done:end])
        done = end
    return "".join(out) + text[done:] if out else text


def _word_start(text: str, hyphen: int, floor: int) -> int:
    """Where the run of letters that ends at `hyphen` starts (not before `floor`)."""
    start = hyphen
    while start > floor and _LETTER.match(text, start - 1):
        start -= 1
    return start


def _hyphenated_words(text: str) -> set[str]:
    """Every `letters-letters` of the text, lowercased (as re.findall would find them)."""
    words, done = set(), 0
    for hyphen in _INNER_HYPHEN.finditer(text):
        at = hyphen.start()
        start = _word_start(text, at, done) if at >= done else at
        if start < at:
            done = _LETTERS.match(text, at + 1).end()
            words.add(text[start:done].lower())
    return words


@functools.lru_cache(maxsize=4096)  # running lines repeat by definition
def _line_key(line: str) -> str:
    if _plain(line):  # most body lines: nothing below would change the line in lower case
        return line.lower()
    key = " ".join(line.lower().split())
    if _ROMAN_LINE.match(key):
        return PAGE_NUMBER_KEY
    if not _digitless_ascii(key):
        key = _DIGITS.sub("#", key)
    key = key.strip(" -–—|·•")
    if _PAGE_NUMBER_KEY.match(key):
        return PAGE_NUMBER_KEY
    return key


def _plain(line: str) -> bool:
    """ASCII words with single spaces between them, no digit or '#', nothing to strip at its
    ends: a line whose key is itself in lower case (a roman numeral has no space, a page
    number has a digit), tested in C."""
    return (line.isascii() and " " in line and "  " not in line
            and line[0] not in _ASCII_EDGE_MARKS and line[-1] not in _ASCII_EDGE_MARKS
            and not line.encode("ascii").translate(None, _PLAIN_CHARS))


def _digitless_ascii(line: str) -> bool:
    """ASCII without a digit (a body line, mostly), tested in C: the pattern that finds digits
    tests each character, half the time of a body line's key."""
    return line.isascii() and not line.encode("ascii").translate(None, _NOT_ASCII_DIGITS)


def _first_filled(lines: Sequence[str], indexes: range) -> list[int]:
    found = []
    for i in indexes:
        if lines[i].strip():
            found.append(i)
            if len(found) == EDGE_LINES:
                break
    return found


def _table_row(line: str) -> bool:
    return " | " in line or line.lstrip().startswith("|")


def _in_table(lines: Sequence[str], i: int) -> bool:
    """A row of a table of two rows or more (text mode's "a | b" or Markdown's "| a | b |"
    on the line next to another): its data, even when the same rows are on every slide."""
    return _table_row(lines[i]) and any(
        0 <= j < len(lines) and _table_row(lines[j]) for j in (i - 1, i + 1))


def _edge_keys(lines: Sequence[str]) -> dict[int, str]:
    """Line index -> key, for the first and last non-empty lines of a page (short ones that
    are not rows of a table)."""
    edges = _first_filled(lines, range(len(lines)))
    edges += _first_filled(lines, range(len(lines) - 1, -1, -1))
    return {i: _line_key(lines[i]) for i in edges
            if len(lines[i]) <= RUNNING_MAX_CHARS and not _in_table(lines, i)}


def _only_edges(lines: Sequence[str], edges: dict[int, str]) -> bool:
    return all(i in edges or not line.strip() for i, line in enumerate(lines))


def remove_running_lines(pages: Sequence[str]) -> list[str]:
    """Drop headers, footers and page numbers that repeat at the edges of most pages."""
    if len(pages) < RUNNING_MIN_PAGES:
        return list(pages)
    split = [page.split("\n") for page in pages]
    edges = [_edge_keys(lines) for lines in split]
    seen_on: Counter[str] = Counter()
    for keys in edges:
        seen_on.update(k for k in set(keys.values()) if k)
    running = {k for k, n in seen_on.items() if n > RUNNING_SHARE * len(pages)}
    if not running:
        return list(pages)
    out: list[str] = []
    for page, lines, keys in zip(pages, split, edges, strict=True):
        drop = {i for i, k in keys.items() if k in running}
        if len(drop) == len(keys) and _only_edges(lines, keys):
            # a page of nothing but "running" lines is a page whose body repeats (forms,
            # slides): keep all but its page number
            drop = {i for i in drop if keys[i] == PAGE_NUMBER_KEY}
        if not drop:
            out.append(page)
            continue
        for i in sorted(drop, reverse=True):  # a few lines, at the edges
            del lines[i]
        out.append("\n".join(lines))
    return out


def clean_page(text: str) -> str:
    """Per-page clean-up (before running headers are found across pages)."""
    return normalize_whitespace(normalize_unicode(text))


def join_pages(pages: Sequence[str]) -> str:
    """Pages into one text: a blank line between pages, unless a word runs across the break."""
    out: list[str] = []
    for page in pages:
        if not page:
            continue
        if out:
            prev = out[-1]
            out.append("\n" if prev.endswith("-") and page[:1].islower() else "\n\n")
        out.append(page)
    return "".join(out)


def clean_text(text: str) -> str:
    """The whole clean-up for a text without pages (HTML, plain text)."""
    return normalize_whitespace(dehyphenate(normalize_unicode(text)))


def clean_pages(pages: Sequence[str]) -> tuple[list[str], str]:
    """Clean each page, drop running headers/footers; returns (page texts, document text)."""
    cleaned = [clean_page(p) for p in pages]
    trimmed = remove_running_lines(cleaned)
    # removing lines only leaves blank runs behind, on the pages that lost them; joining and
    # dehyphenation make none, so only those pages are collapsed, not the whole document
    # (a pass over all of it)
    page_texts = [t if t is c else t.strip("\n") for t, c in zip(trimmed, cleaned, strict=True)]
    joined = [t if t is c else collapse_blank_runs(t)
              for t, c in zip(page_texts, cleaned, strict=True)]
    return page_texts, dehyphenate(join_pages(joined))
