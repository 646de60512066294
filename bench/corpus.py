"""A fixed corpus of real text: the standard library's documentation as pydoc renders it.

Every machine with this Python has it, and it does not change from process to process: the
pages are rendered in a child process with a fixed environment (hash seed, locale, no
variables of the caller's: `os.environ` and `cgi`'s defaults show up in the pages), in `/`,
with memory addresses and handles masked (`<function f at 0x7f...>`), and without the DATA and
FILE sections (run-time values, install paths). Modules that describe the running process
(`sys`, `site`, `sysconfig`) or act on import (`antigravity`, `this`) are left out.

Each module's page is cut at blank lines into documents of at most DOC_CHARS characters, so
the split by document id (shards.val_fraction) has hundreds of documents to draw from.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

DOC_CHARS = 8000  # the longest document a page is cut into (characters)
# not documentation of a library: run-time state, install paths, side effects on import
SKIP = frozenset({
    "antigravity", "this", "__hello__", "__phello__", "sys", "site", "sysconfig", "test",
    "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "pydoc_data", "ensurepip", "venv",
    "xxsubtype", "xxlimited", "xxlimited_35",
})
CHILD_ENV = {"PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8", "PYTHONWARNINGS": "ignore"}
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]+\b|(?<=handle )[0-9a-fA-F]{6,}\b")
_SECTION = re.compile(r"^[A-Z][A-Z ]+$")  # pydoc's section headings: NAME, CLASSES, DATA, ...
DROPPED_SECTIONS = ("DATA", "FILE")

# what the child runs: every named module's page, as JSON on stdout
_RENDER = """
import contextlib, importlib, io, json, pydoc, sys
pages = {}
for name in json.loads(sys.argv[1]):
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            pages[name] = pydoc.plain(pydoc.render_doc(importlib.import_module(name), "%s"))
    except Exception:  # a module this build lacks (curses, readline, ...)
        continue
json.dump(pages, sys.stdout)
"""


def stdlib_modules() -> list[str]:
    """The public top-level standard library modules worth reading, sorted."""
    return sorted(n for n in sys.stdlib_module_names if not n.startswith("_") and n not in SKIP)


def render_pages(modules: list[str]) -> dict[str, str]:
    """module -> its pydoc page, rendered in a child with a fixed environment, normalised."""
    out = subprocess.run([sys.executable, "-c", _RENDER, json.dumps(modules)], cwd="/",
                         env=CHILD_ENV, capture_output=True, text=True, check=True)
    return {name: normalise(page) for name, page in json.loads(out.stdout).items()}


def normalise(page: str) -> str:
    """A page without addresses and without its run-time sections."""
    kept, dropping = [], False
    for line in page.splitlines():
        if _SECTION.match(line):
            dropping = line.strip() in DROPPED_SECTIONS
        if not dropping:
            kept.append(_ADDRESS.sub("0x", line).rstrip())
    return "\n".join(kept).strip() + "\n"


def cut(page: str, max_chars: int = DOC_CHARS) -> list[str]:
    """A page cut at blank lines into pieces of at most max_chars (a longer paragraph alone)."""
    docs, current, size = [], [], 0
    for para in re.split(r"\n\s*\n", page):
        if current and size + len(para) > max_chars:
            docs.append("\n\n".join(current))
            current, size = [], 0
        current.append(para)
        size += len(para) + 2
    if current:
        docs.append("\n\n".join(current))
    return [d for d in docs if d.strip()]


def write_corpus(folder: Path, modules: list[str] | None = None, *,
                 max_chars: int = DOC_CHARS) -> tuple[int, str]:
    """The corpus as text files `<module>-NNN.txt` in `folder`: (documents, sha256 of all)."""
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    count = 0
    pages = render_pages(modules if modules is not None else stdlib_modules())
    for name in sorted(pages):
        for i, doc in enumerate(cut(pages[name], max_chars)):
            path = folder / f"{name}-{i:03d}.txt"
            path.write_text(doc, encoding="utf-8")
            digest.update(path.name.encode() + b"\0" + doc.encode("utf-8") + b"\0")
            count += 1
    return count, digest.hexdigest()


if __name__ == "__main__":  # print the corpus's fingerprint: the same on every run
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        n, sha = write_corpus(Path(tmp))
        print(f"{n} documents, sha256 {sha}, from {os.path.basename(sys.executable)} "
              f"{sys.version.split()[0]}")
