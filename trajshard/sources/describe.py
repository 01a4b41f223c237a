"""``trajshard describe``: what a source holds, as a table, and the mapping template that ingests it.

``describe_source(path, fmt)`` resolves the format (``detect_format``) and calls that reader
module's ``describe(root, **settings) -> Listing``; a format whose module has none yet gets a clear
message. ``render_listing`` is the human table, ``mapping_toml`` the template a user edits (a
``[mapping]`` table under a comment header with the settings the source needs); ``write_mapping``
writes it atomically. A template is active only for the formats whose reader takes a mapping
(``MAPPED``); for the others its keys are comments (the reader's fixed choices) under an empty
``[mapping]`` table, so ``--mapping FILE`` still works and changes nothing.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

from trajshard.io import write_bytes_atomic
from trajshard.sources import MAPPED, SOURCES, STEP_INDEXED, detect_format
from trajshard.sources.listing import KeyInfo, Listing

BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
COLUMNS = ("key", "kind", "dtype", "shape", "rate", "span", "count", "detail")


class DescribeError(ValueError):
    """A source that cannot be described; the message says why and what to do."""


def describe_source(path: str | os.PathLike, fmt: str = "auto", **settings: object) -> Listing:
    """The listing of SOURCE by its format's describer; DescribeError when the format has none."""
    root = Path(path)
    if fmt == "auto":
        fmt = detect_format(root)
    if fmt not in SOURCES:
        raise DescribeError(f"unknown source format {fmt!r}; known: {sorted(SOURCES)}")
    module = sys.modules[SOURCES[fmt].__module__]  # imported by trajshard.sources
    describer = getattr(module, "describe", None)
    if describer is None:
        raise DescribeError(
            f"describe cannot list a {fmt} source yet ({module.__name__} has no describe()); "
            f"`trajshard validate {path}` checks it and docs/formats.md says what its reader reads"
        )
    return describer(root, **{k: v for k, v in settings.items() if v is not None})


# -- the human table ------------------------------------------------------------------------------


def render_listing(listing: Listing, source: str = "") -> str:
    """The listing as a table (one row per key), its notes and the mapping template."""
    head = f"{source}: " if source else ""
    lines = [
        f"{head}{listing.format} source, {listing.episodes} episodes; keys of {listing.example}:",
        "",
        *_table([_row(k) for k in listing.keys]),
    ]
    if listing.notes:
        lines += ["", "notes:", *(f"  - {n}" for n in listing.notes)]
    lines += ["", "mapping template (trajshard describe SOURCE --write-mapping FILE writes it):", ""]
    return "\n".join(lines) + "\n" + mapping_toml(listing, source, with_notes=False)


def _row(k: KeyInfo) -> list[str]:
    shape = "x".join(str(d) for d in k.shape) if k.shape else ""
    rate = f"{k.rate_hz:.4g} Hz" if k.rate_hz else ""
    span = f"{k.span_s[0]:.3f}-{k.span_s[1]:.3f} s" if k.span_s else ""
    count = "" if k.count is None else str(k.count)
    detail = k.detail
    if k.names:
        shown = ", ".join(k.names[:4]) + (", ..." if len(k.names) > 4 else "")
        detail = f"{detail}; names {shown}" if detail else f"names {shown}"
    return [k.key, k.kind, k.dtype, shape, rate, span, count, detail]


def _table(rows: list[list[str]]) -> list[str]:
    """Rows under a header, each column as wide as its widest cell (the last one left free)."""
    widths = [max(len(r[i]) for r in [list(COLUMNS), *rows]) for i in range(len(COLUMNS) - 1)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + "  " + cells[-1]

    return [line(list(COLUMNS)).rstrip(), *(line(r).rstrip() for r in rows)]


# -- the mapping template -------------------------------------------------------------------------


def mapping_toml(listing: Listing, source: str = "", with_notes: bool = True) -> str:
    """The template: a comment header (source, use, settings, notes), then ``[mapping]``. Active keys
    only when the format's reader takes a mapping; tomllib reads it back to ``listing.mapping``."""
    active = listing.format in MAPPED
    lines = [
        f"# trajshard mapping for {source or 'SOURCE'} ({listing.format}, {listing.episodes} episodes),",
        "# written by `trajshard describe`. Use: trajshard ingest SOURCE OUT --mapping THIS_FILE",
        '# Keys: state, action (lists of parts "key" or "key[a:b]"), cameras (output name = key),',
        "# instruction, time_base; see docs/formats.md. As written it reads the source as its reader",
        "# does without a mapping, except where a note says it guessed.",
    ]
    settings = [f"#   {k} = {toml_value(v)}" for k, v in listing.settings.items()]
    if listing.format in STEP_INDEXED and "source_fps" not in listing.settings:
        settings.append("#   source_fps = <Hz>   # the recording's step rate: this format carries no clock")
    if settings:
        lines += ["# Settings for this source (flags, or keys of a --config job file):", *settings]
    if not active:
        lines += [
            f"# The {listing.format} reader takes no mapping yet: the keys below are its fixed",
            "# choices, for reference; the [mapping] table stays empty.",
        ]
    if listing.notes and with_notes:
        lines += ["# Notes:", *(f"#   - {' '.join(n.split())}" for n in listing.notes)]
    lines.append("[mapping]")
    body = [f"{toml_key(k)} = {toml_value(v)}" for k, v in listing.mapping.items()]
    lines += body if active else [f"# {b}" for b in body]
    return "\n".join(lines) + "\n"


def write_mapping(listing: Listing, path: str | os.PathLike, source: str = "") -> None:
    """The template written to ``path`` atomically (a temporary name, then a rename)."""
    write_bytes_atomic(path, mapping_toml(listing, source).encode("utf-8"))


def listing_json(listing: Listing, source: str = "") -> str:
    return json.dumps({"source": source, **listing.to_json()}, indent=2, ensure_ascii=False)


# -- TOML values (strings, numbers, booleans, lists, inline tables) --------------------------------


def toml_key(key: str) -> str:
    return key if BARE_KEY.match(key) else toml_value(key)


def toml_value(value: object) -> str:
    """One TOML value. Strings use JSON's escapes, which are TOML's basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML template: {value} is not a finite number")
        return repr(value)
    if isinstance(value, str):  # JSON escapes U+0000-U+001F; TOML also refuses a raw DEL
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise ValueError(f"TOML template: cannot write {type(value).__name__} {value!r}")
