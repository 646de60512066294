"""A documentation folder as Sphinx builds one, made by the tests (no tests here).

Pages in Sphinx's layout (related bars with next/previous links, a sidebar, a footer around
the `role="main"` body; headings and API entries with their permalink anchors), and what a
real build ships beside them: scripts, style sheets, a search index, JSON/XML data, fonts,
icons, an inventory. The pages cover the three ways such folders went wrong: a chapter page
whose content ends in a list of links, API entries with "¶" marks, and a tutorial whose
code listings repeat as the example module grows.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = "Demo 1.0 documentation"
NAV_WORDS = ("Previous topic", "Next topic", "Report a Bug", "Show Source", "Navigation",
             PROJECT, "Copyright 2001")


@dataclass(slots=True)
class DocSite:
    top: Path
    pages: dict[str, str] = field(default_factory=dict)  # relative path -> page title
    assets: list[str] = field(default_factory=list)  # relative paths of the static assets


def _headerlink(anchor: str, what: str = "heading") -> str:
    return (f'<a class="headerlink" href="#{anchor}" title="Link to this {what}">'
            "\N{PILCROW SIGN}</a>")


def heading(level: int, anchor: str, text: str) -> str:
    return f'<h{level}>{text}{_headerlink(anchor)}</h{level}>'


def api_entry(name: str, signature: str, paragraphs: list[str]) -> str:
    """A Sphinx `py:function` entry: the signature in <dt> with its permalink, then <dd>
    with its paragraphs written back to back, as Sphinx writes them inside a list item."""
    module, _, func = name.rpartition(".")
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (f'<dl class="py function"><dt class="sig sig-object py" id="{name}">'
            f'<span class="sig-prename descclassname">{module}.</span>'
            f'<span class="sig-name descname">{func}</span>'
            f'<span class="sig-paren">(</span>{signature}<span class="sig-paren">)</span>'
            f'{_headerlink(name, "definition")}</dt><dd>{body}</dd></dl>')


def sphinx_page(title: str, body: str, up: str = "", prev: str = "", next_: str = "") -> str:
    """A page in Sphinx's layout: navigation and sidebar around the main body."""
    related = (f'<div class="related" role="navigation" aria-label="related navigation">'
               f'<h3>Navigation</h3><ul><li class="right"><a href="{up}genindex.html">index</a>'
               f'</li><li class="right"><a href="{next_}">next</a> |</li>'
               f'<li class="right"><a href="{prev}">previous</a> |</li>'
               f'<li class="nav-item nav-item-0"><a href="{up}index.html">{PROJECT}</a> &#187;'
               f'</li><li class="nav-item nav-item-this"><a href="">{title}</a></li></ul></div>')
    sidebar = (f'<div class="sphinxsidebar" role="navigation" aria-label="main navigation">'
               f'<div class="sphinxsidebarwrapper"><h4>Previous topic</h4><p class="topless">'
               f'<a href="{prev}" title="previous chapter">The previous chapter</a></p>'
               f'<h4>Next topic</h4><p class="topless"><a href="{next_}" title="next chapter">'
               f'The next chapter</a></p><h3>This Page</h3><ul class="this-page-menu">'
               f'<li><a href="{up}bugs.html">Report a Bug</a></li>'
               f'<li><a href="{up}_sources/page.rst.txt" rel="nofollow">Show Source</a></li>'
               f'</ul></div></div>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<title>{title} &#8212; {PROJECT}</title>'
            f'<link rel="stylesheet" href="{up}_static/pygments.css" type="text/css">'
            f'<script src="{up}_static/jquery.js"></script>'
            f'<script src="{up}_static/underscore.js"></script></head><body>\n'
            f'{related}\n<div class="document"><div class="documentwrapper">'
            f'<div class="bodywrapper"><div class="body" role="main">\n{body}\n</div></div></div>'
            f'\n{sidebar}<div class="clearer"></div></div>\n{related}\n'
            f'<div class="footer">&#169; Copyright 2001-2024, Demo Software Foundation. '
            f'Last updated on Jan 01, 2024.</div></body></html>\n')


def _toctree(items: list[tuple[str, str, list[str]]]) -> str:
    """Sphinx's toctree: one link per chapter, and a nested list of links to its sections."""
    out = ['<div class="toctree-wrapper compound"><ul>']
    for href, text, sections in items:
        subs = "".join(f'<li class="toctree-l2"><a class="reference internal" '
                       f'href="{href}#{s.lower().replace(" ", "-")}">{s}</a></li>'
                       for s in sections)
        out.append(f'<li class="toctree-l1"><a class="reference internal" href="{href}">'
                   f'{text}</a>' + (f"<ul>{subs}</ul>" if subs else "") + "</li>")
    out.append("</ul></div>")
    return "\n".join(out)


CHAPTER_LIST = [
    ("pickle.html", "pickle — Python object serialization",
     ["Relationship to other Python modules", "Data stream format", "Module Interface"]),
    ("copyreg.html", "copyreg — Register pickle support functions", ["Example"]),
    ("shelve.html", "shelve — Python object persistence", ["Restrictions", "Example"]),
    ("marshal.html", "marshal — Internal Python object serialization", []),
    ("sqlite3.html", "sqlite3 — DB-API 2.0 interface for SQLite databases",
     ["Tutorial", "Reference", "How-to guides"]),
]
CHAPTER_LAST_ITEM = "sqlite3 — DB-API 2.0 interface for SQLite databases"


def chapter_page() -> str:
    """Like library/persistence.html: two paragraphs, then the chapter's list of modules."""
    body = (f'<section id="data-persistence">{heading(1, "data-persistence", "Data Persistence")}'
            "<p>The modules described in this chapter support storing Python data in a "
            "persistent form on disk. The pickle and marshal modules can turn many Python "
            "data types into a stream of bytes and then recreate the objects from the "
            "bytes.</p>\n<p>The various DBM-related modules support a family of hash-based "
            "file formats that store a mapping of strings to other strings.</p>\n"
            "<p>The list of modules described in this chapter is:</p>\n"
            f"{_toctree(CHAPTER_LIST)}\n</section>")
    return sphinx_page("Data Persistence", body, up="../", prev="shutil.html",
                       next_="pickle.html")


API_PARAGRAPHS = [
    "Write the pickled representation of the object obj to the open file object file. "
    "This is equivalent to Pickler(file, protocol).dump(obj).",
    "Arguments file, protocol and fix_imports have the same meaning as in the Pickler "
    "constructor, which describes each of them in turn.",
]


def api_page() -> str:
    """Like library/pickle.html: sections with headerlinks, a local table of contents,
    and API entries with "Link to this definition" marks."""
    body = (
        f'<section id="module-pickle">'
        f'{heading(1, "module-pickle", "pickle — Python object serialization")}'
        '<nav class="contents local" id="contents"><ul>'
        '<li><a class="reference internal" href="#relationship">Relationship to other '
        'modules</a></li><li><a class="reference internal" href="#interface">Module '
        'Interface</a></li></ul></nav>'
        "<p>The pickle module implements binary protocols for serializing and "
        "de-serializing a Python object structure. Pickling is the process whereby a Python "
        "object hierarchy is converted into a byte stream, and unpickling is the inverse "
        "operation, whereby a byte stream is converted back into an object hierarchy. The "
        "pilcrow sign (\N{PILCROW SIGN}) in this sentence is text, not a permalink.</p>"
        f'<section id="relationship">{heading(2, "relationship", "Relationship to other modules")}'
        "<p>Python has a more primitive serialization module called marshal, but in general "
        "pickle should always be the preferred way to serialize Python objects. The marshal "
        "module exists primarily to support the compiled files of Python modules.</p>"
        "</section>"
        f'<section id="interface">{heading(2, "interface", "Module Interface")}'
        "<p>To serialize an object hierarchy, you simply call the dumps() function. "
        "Similarly, to de-serialize a data stream, you call the loads() function.</p>"
        + api_entry("pickle.dump", "obj, file, protocol=None", API_PARAGRAPHS)
        + api_entry("pickle.loads", "data, /, *, fix_imports=True",
                    ["Return the reconstituted object hierarchy of the pickled representation "
                     "data of an object. The data must be a bytes-like object.",
                     "The protocol version of the pickle is detected automatically, so no "
                     "protocol argument is needed."])
        + "</section></section>")
    return sphinx_page("pickle — Python object serialization", body, up="../",
                       prev="persistence.html", next_="copyreg.html")


# A C extension module as a tutorial grows it: each listing repeats the one before.
_C_HEAD = """#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "structmember.h"

typedef struct {
    PyObject_HEAD
    PyObject *first; /* first name */
    PyObject *last;  /* last name */
    int number;
} CustomObject;
"""
_C_DEALLOC = """
static void
Custom_dealloc(CustomObject *self)
{
    Py_XDECREF(self->first);
    Py_XDECREF(self->last);
    Py_TYPE(self)->tp_free((PyObject *) self);
}
"""
_C_NEW = """
static PyObject *
Custom_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    CustomObject *self;
    self = (CustomObject *) type->tp_alloc(type, 0);
    if (self != NULL) {
        self->first = PyUnicode_FromString("");
        if (self->first == NULL) {
            Py_DECREF(self);
            return NULL;
        }
        self->last = PyUnicode_FromString("");
        if (self->last == NULL) {
            Py_DECREF(self);
            return NULL;
        }
        self->number = 0;
    }
    return (PyObject *) self;
}
"""
_C_INIT = """
static int
Custom_init(CustomObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"first", "last", "number", NULL};
    PyObject *first = NULL, *last = NULL, *tmp;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOi", kwlist,
                                     &first, &last,
                                     &self->number))
        return -1;

    if (first) {
        tmp = self->first;
        Py_INCREF(first);
        self->first = first;
        Py_XDECREF(tmp);
    }
    if (last) {
        tmp = self->last;
        Py_INCREF(last);
        self->last = last;
        Py_XDECREF(tmp);
    }
    return 0;
}
"""
_C_NAME = """
static PyObject *
Custom_name(CustomObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->first == NULL) {
        PyErr_SetString(PyExc_AttributeError, "first");
        return NULL;
    }
    if (self->last == NULL) {
        PyErr_SetString(PyExc_AttributeError, "last");
        return NULL;
    }
    return PyUnicode_FromFormat("%S %S", self->first, self->last);
}

static PyMethodDef Custom_methods[] = {
    {"name", (PyCFunction) Custom_name, METH_NOARGS,
     "Return the name, combining the first and last name"
    },
    {NULL}  /* Sentinel */
};
"""
_C_TAIL = """
static PyTypeObject CustomType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "custom.Custom",
    .tp_doc = PyDoc_STR("Custom objects"),
    .tp_basicsize = sizeof(CustomObject),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = Custom_new,
};

static PyModuleDef custommodule = {
    PyModuleDef_HEAD_INIT,
    .m_name = "custom",
    .m_doc = "Example module that creates an extension type.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit_custom(void)
{
    PyObject *m;
    if (PyType_Ready(&CustomType) < 0)
        return NULL;

    m = PyModule_Create(&custommodule);
    if (m == NULL)
        return NULL;

    Py_INCREF(&CustomType);
    if (PyModule_AddObject(m, "Custom", (PyObject *) &CustomType) < 0) {
        Py_DECREF(&CustomType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
"""
LISTINGS = [_C_HEAD + _C_TAIL, _C_HEAD + _C_DEALLOC + _C_NEW + _C_TAIL,
            _C_HEAD + _C_DEALLOC + _C_NEW + _C_INIT + _C_TAIL,
            _C_HEAD + _C_DEALLOC + _C_NEW + _C_INIT + _C_NAME + _C_TAIL]
TUTORIAL_PROSE = [
    "Python allows the writer of a C extension module to define new types that can be "
    "manipulated from Python code, much like the built-in str and list types. The code for "
    "all extension types follows a pattern, but there are some details that you need to "
    "understand before you can get started. This document is a gentle introduction.",
    "This sort of thing can only be explained by example, so here is a minimal, but "
    "complete, module that defines a new type named Custom inside a C extension module. "
    "Now that is quite a bit to take in at once, but hopefully the pieces will seem "
    "familiar from the previous chapter.",
    "Let us extend the basic example to add some data and methods. We also make the type "
    "usable as a base class. This version of the module has a number of changes: the type "
    "now has a deallocation function, because it holds references to other objects, and a "
    "new function that makes sure the first and last names are initialized to empty strings.",
    "We also want to offer a way to set the attributes when an object is created. The "
    "initializer accepts the first and last names and a number as optional arguments, and "
    "it replaces the old values safely: a reference is released only after the new value "
    "has been stored, so that a destructor can never see a half-updated object.",
    "Finally, the name method returns the first and last names joined by a space. It fails "
    "with an attribute error when either of them has been deleted, which is why the "
    "following section makes the attributes impossible to delete in the first place.",
]


def tutorial_page() -> str:
    """Like extending/newtypes_tutorial.html: prose, and the module's code after each step."""
    parts = [f'<section id="tutorial">'
             f'{heading(1, "tutorial", "Defining Extension Types: Tutorial")}'
             f"<p>{TUTORIAL_PROSE[0]}</p>"]
    for prose, listing in zip(TUTORIAL_PROSE[1:], LISTINGS, strict=True):
        parts.append(f"<p>{prose}</p>")
        parts.append('<div class="highlight-c notranslate"><div class="highlight"><pre>'
                     f"<span></span>{_escape(listing)}</pre></div></div>")
    parts.append("</section>")
    return sphinx_page("Defining Extension Types: Tutorial", "\n".join(parts), up="../",
                       prev="extending.html", next_="newtypes.html")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def index_page() -> str:
    body = (f'<section id="demo">{heading(1, "demo", "Demo documentation")}'
            "<p>Welcome. This is the documentation of the demo project: its library "
            "reference, which describes the modules it ships, and its guide to extending it "
            "with modules written in C, which walks through a complete example.</p>\n"
            + _toctree([("library/persistence.html", "Data Persistence", []),
                        ("library/pickle.html", "pickle — Python object serialization", []),
                        ("extending/newtypes_tutorial.html",
                         "Defining Extension Types: Tutorial", [])])
            + "</section>")
    return sphinx_page("Demo documentation", body, prev="about.html", next_="contents.html")


def _woff2() -> bytes:
    return b"wOF2\x00\x01\x00\x00" + struct.pack(">I", 2048) + bytes(range(256)) * 8


def _ttf() -> bytes:
    return b"\x00\x01\x00\x00" + struct.pack(">HHHH", 12, 128, 3, 64) + bytes(range(256)) * 8


def _icon_png(side: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), "black").save(buf, format="PNG")
    return buf.getvalue()


def _inventory() -> bytes:
    entries = "".join(f"pickle.{n} py:function 1 library/pickle.html#$ -\n"
                      for n in ("dump", "dumps", "load", "loads"))
    return (b"# Sphinx inventory version 2\n# Project: Demo\n# Version: 1.0\n"
            b"# The remainder of this file is compressed using zlib.\n"
            + zlib.compress(entries.encode()))


JS_NAMES = [f"{verb}{noun}" for verb in ("get", "set", "has", "remove", "toggle", "find",
                                        "append", "prepend", "clone", "wrap", "parse", "queue")
            for noun in ("Attr", "Prop", "Class", "Data", "Style", "Text", "Html", "Value",
                         "Width", "Height", "Offset", "Position", "Event", "Handler", "Node",
                         "Sibling", "Parent", "Child", "Index", "Selector")]


def script(banner: str, names: list[str]) -> bytes:
    """Unminified library code, as Debian ships jquery.js: every line its own."""
    out = [banner, "( function( global, factory ) {", '"use strict";']
    for i, name in enumerate(names):
        out += [f"jQuery.fn.{name} = function( elem, value{i} ) {{",
                f"\tvar {name}Hook = jQuery.{name}Hooks[ elem.nodeName ] || nodeHook{i % 7};",
                f"\treturn access( this, {name}Hook, elem, value{i}, arguments.length > {i % 3} );",
                "};"]
    out.append("} )( typeof window !== \"undefined\" ? window : this );")
    return ("\n".join(out) + "\n").encode()


def style_sheet(rules: int) -> bytes:
    """pygments.css: one rule per token class, each with its comment."""
    lines = ["pre { line-height: 125%; }"]
    for i in range(rules):
        lines.append(f".highlight .t{i:x} {{ color: #{(i * 2654435761) % 0xFFFFFF:06x}; "
                     f"font-style: {'italic' if i % 2 else 'normal'} }} /* Token.Kind{i} */")
    return ("\n".join(lines) + "\n").encode()


def assets() -> dict[str, bytes]:
    """What a Sphinx build ships beside its pages (name -> bytes)."""
    glossary = {term: f"The {term} is a term this documentation uses often; see the "
                      f"chapter that introduces the {term} for a full explanation."
                for term in ("interpreter", "module", "package", "bytecode", "iterator")}
    return {
        "_static/jquery.js": script("/*! jQuery v3.6.1 | (c) OpenJS Foundation */", JS_NAMES),
        "_static/underscore.js": script("//     Underscore.js 1.13.1", JS_NAMES[::7]),
        "_static/doctools.js": script("/* doctools.js: Sphinx JavaScript utilities */",
                                      JS_NAMES[::11]),
        "_static/pygments.css": style_sheet(80),
        "_static/basic.css": style_sheet(200),
        "_static/app.js.map": json.dumps({"version": 3, "sources": ["app.ts"],
                                          "mappings": "AAAA,SAASA" * 50}).encode(),
        "_static/glossary.json": json.dumps(glossary, indent=2).encode(),
        "_static/opensearch.xml": b'<?xml version="1.0" encoding="utf-8"?>\n<OpenSearch'
                                  b'Description xmlns="http://a9.com/-/spec/opensearch/1.1/">'
                                  b"<ShortName>Demo</ShortName><Description>Search the demo "
                                  b"documentation</Description></OpenSearchDescription>\n",
        "_static/py.svg": b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">'
                          b'<path d="M12 0C5.4 0 6 2.9 6 2.9v3h6.1v.9H3.6S0 6.4 0 12.9"/>'
                          b"</svg>\n",
        "_static/fonts/lato-normal.woff2": _woff2(),
        "_static/fonts/icons.ttf": _ttf(),
        "_static/minus.png": _icon_png(11),
        "_static/file.png": _icon_png(16),
        "searchindex.js": ('Search.setIndex({"docnames": ["index", "library/pickle"], '
                           '"titles": ["Demo documentation", "pickle"], "terms": {'
                           + ", ".join(f'"term{i}": [0, 1]' for i in range(500))
                           + "}})").encode(),
        "objects.inv": _inventory(),
        ".buildinfo": b"# Sphinx build info version 1\nconfig: 0d1f2e3c4b5a\n"
                      b"tags: 645f666f6e5a6e\n",
    }


PAGES = {
    "index.html": ("Demo documentation", index_page),
    "library/persistence.html": ("Data Persistence", chapter_page),
    "library/pickle.html": ("pickle — Python object serialization", api_page),
    "extending/newtypes_tutorial.html": ("Defining Extension Types: Tutorial", tutorial_page),
}


def build_docsite(top: Path) -> DocSite:
    """Write the Sphinx-like folder under `top`."""
    site = DocSite(top=top)
    for rel, (title, make) in PAGES.items():
        path = top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make(), encoding="utf-8")
        site.pages[rel] = title
    for rel, data in assets().items():
        path = top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        site.assets.append(rel)
    return site
