"""The HTML of the browse site: ``index.html`` (the filterable grid) and one page per image.

Pages are plain strings built in a fixed order from sorted data, so the same dataset gives the same bytes.
The grid's data travels inside ``index.html`` as JSON in a script tag: a page opened from disk (``file://``)
may not fetch files beside it, but it can read its own text.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from urllib.parse import quote

import numpy as np

FILTERS = (("split", "split"), ("generators", "generator"), ("n_edits", "edits"), ("actions", "action"))


@dataclass
class Panel:
    """One picture of an image page: its file (relative to the page) and caption."""
    src: str
    caption: str


@dataclass
class ImagePage:
    info: dict  # the image's manifest row
    panels: list[Panel]  # image, outlines, label view
    legend: list[tuple[str, np.ndarray, float]]  # (class, colour, share of the image's pixels)
    strip: list[Panel] = field(default_factory=list)  # source and the state after each turn
    strip_note: str = ""  # what the strip shows, or why there is none
    provenance: list[list[str]] = field(default_factory=list)  # header row, then one row per turn (and attempt)


def _head(title: str, css: str) -> str:
    return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f'<link rel="stylesheet" href="{css}">\n</head>\n<body>\n')


def _hex(colour: np.ndarray) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in colour)


def _swatch(name: str, colour: np.ndarray, note: str = "") -> str:
    return (f'<li><span class="swatch" style="background:{_hex(colour)}"></span>{escape(name)}'
            f'{escape(note)}</li>')


def page_name(image_id: str) -> str:
    return f"images/{quote(image_id)}.html"


def index(title: str, summary: str, items: list[dict], options: dict[str, list[tuple[str, int]]],
          classes: list[str], colours: np.ndarray) -> str:
    """The grid page; ``options`` maps each filter's field to its (value, number of images) choices."""
    selects = []
    for name, label in FILTERS:
        choices = "".join(f'<option value="{escape(v)}">{escape(v)} ({n})</option>' for v, n in options[name])
        selects.append(f'<label>{label} <select name="{name}"><option value="">all</option>{choices}</select>'
                       f'</label>')
    legend = "".join(_swatch(name, colours[k]) for k, name in enumerate(classes) if k > 0)
    data = json.dumps(items, sort_keys=True, separators=(",", ":")).replace("</", "<\\/")
    return (_head(title, "browse.css") + f"<header>\n<h1>{escape(title)}</h1>\n<p>{escape(summary)}</p>\n"
            f'<ul class="legend">{legend}</ul>\n</header>\n'
            f'<form id="filters">{"".join(selects)}<output id="count"></output></form>\n'
            f'<main id="grid"></main>\n<script type="application/json" id="dataset">{data}</script>\n'
            f'<script src="browse.js"></script>\n</body>\n</html>\n')


def _figures(panels: list[Panel], css_class: str) -> str:
    figs = "".join(f'<figure><img src="{escape(p.src)}" alt="{escape(p.caption)}">'
                   f"<figcaption>{escape(p.caption)}</figcaption></figure>" for p in panels)
    return f'<div class="{css_class}">{figs}</div>\n'


def _table(rows: list[list[str]], css_class: str) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n'


def image_page(page: ImagePage, image_fields: list[str]) -> str:
    info = page.info
    title = f"image {info['image_id']}"
    legend = "".join(_swatch(name, colour, f": {share:.1%} of the pixels") for name, colour, share in page.legend)
    legend = legend or "<li>no edited pixel</li>"
    facts = [["field", "value"]] + [[k, str(info[k])] for k in image_fields if k in info]
    provenance = _table(page.provenance, "provenance") if page.provenance else \
        "<p>This dataset holds no metadata.parquet, so no provenance per turn.</p>\n"
    return (_head(title, "../browse.css") + f'<header>\n<p><a href="../index.html">all images</a></p>\n'
            f"<h1>{escape(title)}</h1>\n</header>\n<main>\n<h2>Label</h2>\n"
            + _figures(page.panels, "panels") + f'<ul class="legend">{legend}</ul>\n'
            + f'<h2>Turns</h2>\n<p class="note">{escape(page.strip_note)}</p>\n'
            + (_figures(page.strip, "strip") if page.strip else "")
            + "<h2>Provenance</h2>\n" + provenance + "<h2>Image</h2>\n" + _table(facts, "facts")
            + "</main>\n</body>\n</html>\n")
