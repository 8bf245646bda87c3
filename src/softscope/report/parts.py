"""The report's HTML pieces: escaping and number formats, tables, inline PNG figures, the layer-grid heatmap, and
the Section a page is made of. Shared by `report` and `serve`'s pages."""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ..engine.readers import RunView
from ..engine.runs import dumps


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def fmt(x: Any, digits: int = 3) -> str:
    """Numbers the way the page shows them (also what the tests and the browser test look for)."""
    if isinstance(x, bool) or x is None:
        return "—" if x is None else str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "—"
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 10 ** -digits):
            return f"{x:.2e}"
        return f"{x:.{digits}f}"
    return str(x)


def table(header: list[str], rows: Iterable[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, Raw) else esc(fmt(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class Raw(str):
    """Already-escaped HTML for a table cell."""


def kv_table(d: dict, skip: Iterable[str] = ()) -> str:
    rows = [[k, v if not isinstance(v, (dict, list)) else _short(v)] for k, v in d.items() if k not in set(skip)]
    return table(["field", "value"], rows, "kv")


def _short(v: Any, limit: int = 160) -> str:
    s = dumps(v, indent=None)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def img_png(data: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def embed_png(view: RunView, path: Path, caption: str | None = None) -> str:
    view.used_pngs.add(path.resolve())
    cap = caption or view.rel(path)
    return f'<figure>{img_png(path.read_bytes(), cap)}<figcaption>{esc(cap)}</figcaption></figure>'


def figure(draw: Callable, size=(5.6, 3.4), caption: str = "") -> str:
    """Draw with matplotlib into an inline PNG (figure kept small: the page must stay light)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=size)
    try:
        draw(fig)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
    finally:
        plt.close(fig)
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure>{img_png(buf.getvalue(), caption or 'plot')}{cap}</figure>"


def color(v: float | None, lo: float, hi: float) -> str:
    """Viridis colour of v within [lo, hi] as #rrggbb (grey for missing)."""
    if v is None:
        return "#dddddd"
    from matplotlib import colormaps

    t = 0.5 if hi <= lo else min(1.0, max(0.0, (v - lo) / (hi - lo)))
    r, g, b, _ = colormaps["viridis"](t)
    return "#{:02x}{:02x}{:02x}".format(int(r * 255), int(g * 255), int(b * 255))


def heatmap_table(cells: dict[tuple[int, int], tuple[float | None, str]], score_name: str, caption: str) -> str:
    """Source layer (rows) × target layer (columns); each cell coloured by its score, its text on hover.

    cells[(src, tgt)] = (score or None, hover text).
    """
    if not cells:
        return ""
    srcs = sorted({s for s, _ in cells})
    tgts = sorted({t for _, t in cells})
    vals = [v for v, _ in cells.values() if v is not None]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    head = "".join(f"<th>{t}</th>" for t in tgts)
    rows = []
    for s in srcs:
        tds = []
        for t in tgts:
            c = cells.get((s, t))
            if c is None:
                tds.append('<td class="empty"></td>')
                continue
            v, text = c
            tip = f"source layer {s} → target layer {t} · {score_name} {fmt(v)}\n{text}"
            fg = "#fff" if v is not None and hi > lo and (v - lo) / (hi - lo) < 0.55 else "#000"
            tds.append(f'<td class="cell" style="background:{color(v, lo, hi)};color:{fg}" title="{esc(tip)}" '
                       f'data-src="{s}" data-tgt="{t}">{esc(fmt(v, 2))}</td>')
        rows.append(f"<tr><th>{s}</th>{''.join(tds)}</tr>")
    return (f'<figure class="heat"><table class="heatmap"><thead><tr><th class="corner">src \\ tgt</th>{head}</tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table><figcaption>{esc(caption)} "
            f"(colour: {esc(score_name)} from {fmt(lo)} to {fmt(hi)}; hover a cell for its text)</figcaption></figure>")


@dataclass
class Section:
    id: str
    title: str
    body: str
    summary: str = ""  # one line under the title


def or_else(v: Any, default: Any) -> Any:
    return default if v is None else v
