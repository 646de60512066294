"""The structure a document reader finds (headings, paragraphs, list items, tables) and the two
ways it is written: plain text (extract.format = "text": a heading is a line, a list item a
"- " line, a table's rows "cell | cell") or Markdown ("markdown": `#` headings, `-` and `1.`
lists, GitHub-flavoured tables). One writer for Office, OpenDocument and PDF tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CELL_SEPARATOR = " | "  # as docproc/html.py writes table rows in text mode
MAX_HEADING_LEVEL = 6
INDENT = "  "


@dataclass(frozen=True, slots=True)
class Heading:
    text: str
    level: int = 1  # 1 = the document's top level


@dataclass(frozen=True, slots=True)
class Para:
    text: str


@dataclass(frozen=True, slots=True)
class Item:
    text: str
    level: int = 0  # nesting, 0 = top
    ordered: bool = False


@dataclass(frozen=True, slots=True)
class Table:
    rows: tuple[tuple[str, ...], ...]  # the first row is the header in Markdown


Block = Heading | Para | Item | Table


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    """A cell's text on one line, its pipes escaped (GFM)."""
    return _one_line(text).replace("|", "\\|")


def table_rows(rows: Iterable[Sequence[object]]) -> tuple[tuple[str, ...], ...]:
    """Rows as strings, all as wide as the widest, without rows and columns that are empty."""
    cleaned = [tuple("" if c is None else str(c) for c in row) for row in rows]
    cleaned = [row for row in cleaned if any(c.strip() for c in row)]
    if not cleaned:
        return ()
    width = max(len(row) for row in cleaned)
    padded = [row + ("",) * (width - len(row)) for row in cleaned]
    used = [i for i in range(width) if any(row[i].strip() for row in padded)]
    return tuple(tuple(row[i] for i in used) for row in padded)


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table, the first row as its header."""
    if not rows:
        return ""
    lines = ["| " + " | ".join(_cell(c) for c in rows[0]) + " |",
             "|" + "|".join(" --- " for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def text_table(rows: Sequence[Sequence[str]]) -> str:
    return "\n".join(CELL_SEPARATOR.join(_one_line(c) for c in row if c.strip())
                     for row in rows)


def _render(block: Block, markdown: bool, number: int) -> str:
    if isinstance(block, Heading):
        level = min(max(block.level, 1), MAX_HEADING_LEVEL)
        return f"{'#' * level} {_one_line(block.text)}" if markdown else _one_line(block.text)
    if isinstance(block, Item):
        mark = f"{number}." if block.ordered and markdown else "-"
        return f"{INDENT * block.level}{mark} {_one_line(block.text)}"
    if isinstance(block, Table):
        return markdown_table(block.rows) if markdown else text_table(block.rows)
    return block.text.strip()


def render(blocks: Iterable[Block], markdown: bool) -> str:
    """The blocks as one text: a blank line between blocks, list items of one list together."""
    out: list[str] = []
    previous: Block | None = None
    numbers: dict[int, int] = {}
    for block in blocks:
        if isinstance(block, Item):  # an ordered item's number: its place in its own run
            numbers = numbers if isinstance(previous, Item) else {}
            numbers[block.level] = numbers.get(block.level, 0) + 1 if block.ordered else 0
            for deeper in [lvl for lvl in numbers if lvl > block.level]:
                del numbers[deeper]
        text = _render(block, markdown, numbers.get(getattr(block, "level", 0), 1))
        if not text.strip():
            continue
        if out:
            out.append("\n" if isinstance(block, Item) and isinstance(previous, Item) else "\n\n")
        out.append(text)
        previous = block
    return "".join(out)
