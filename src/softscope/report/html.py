"""`softscope report RUN_DIR`: one self-contained HTML page for any run directory softscope writes.

A researcher should look, not read logs. The page needs no network to view: every plot is an inline
base64 PNG (matplotlib, Agg) and the layer-grid heatmap is an HTML table whose cells carry their text in a
`title` attribute (hover a cell to read the description that layer pair produced).

Sections appear for what the run directory holds (readers tolerate missing and unknown fields):
- run: config.json (command, model, task, versions);
- training: metrics.jsonl + train_summary.json (loss and checkpoint-accuracy curves, checkpoint table);
- explain: explain/explain_summary.json (projection, InSPEcT and PEZ readings side by side, with
  faithfulness and scrutability);
- InSPEcT: descriptions.jsonl / describe_summary.json (best description per checkpoint with its scores,
  accuracy-vs-description plot, the layer-grid heatmap with hover text);
- bias, waywardness, the PEZ / RLPrompt trade-off, PEZ, RLPrompt, interpret: their *_summary.json and *.jsonl
  (summary tables, the method's own PNGs, a trade-off scatter where the method drew none);
- other plots: every PNG the run wrote that no section above already shows;
- sub-runs: folders holding their own config.json (sweeps), one row each.

Files are looked up in the run directory and in its sub-folders (a method may write into RUN/<method>/),
never inside checkpoints/.
"""
from __future__ import annotations

import html
import re
import time
from pathlib import Path

from ..engine.errors import SoftscopeError
from ..engine.readers import RunView
from ..engine.runs import atomic_write_text, read_json
from .parts import esc
from .sections import SECTIONS

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2329;background:#f6f7f9}
header{background:#1f3b57;color:#fff;padding:14px 28px}header h1{margin:0;font-size:20px}
header .sub{opacity:.8;font-size:12px}nav{padding:6px 28px;background:#e4e9ef;font-size:13px}
nav a{margin-right:14px;color:#1f3b57}main{padding:8px 28px 40px;max-width:1180px}
section{background:#fff;border:1px solid #dde3ea;border-radius:6px;margin:16px 0;padding:12px 18px}
section h2{margin:2px 0 2px;font-size:17px}.summary{color:#5a6570;font-size:12px;margin-bottom:8px}
table{border-collapse:collapse;margin:8px 0;font-size:12.5px}th,td{border:1px solid #dde3ea;padding:3px 7px;
text-align:left;vertical-align:top}thead th{background:#eef2f6}table.kv td:first-child{color:#5a6570}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:6px 0}.card{border:1px solid #dde3ea;border-radius:5px;
padding:6px 12px;min-width:110px}.card .k{font-size:11px;color:#5a6570}.card .v{font-size:17px;font-weight:600}
figure{display:inline-block;margin:8px 14px 8px 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:11.5px;color:#5a6570;max-width:760px}code.reading{white-space:pre-wrap;background:#f2f4f7;
padding:1px 4px}table.heatmap td.cell{width:34px;text-align:center;font-size:10.5px;cursor:help;padding:2px}
table.heatmap th{font-size:10.5px;padding:2px 4px}table.heatmap td.empty{background:#fafafa}
table.heatmap td.cell{position:relative}table.heatmap td.cell:hover{outline:2px solid #d33}
table.heatmap td.cell:hover::after{content:attr(title);position:absolute;left:105%;top:0;z-index:5;width:440px;
white-space:pre-wrap;background:#fffbe6;color:#222;border:1px solid #c9b458;padding:6px 8px;font-size:12px;
text-align:left;box-shadow:0 2px 6px rgba(0,0,0,.25)}
.note{font-size:12px;color:#5a6570}details{margin:6px 0}summary{cursor:pointer;color:#1f3b57}
"""


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the self-contained HTML report of a run directory; returns its path (default RUN/report.html).

    The report is one file that may sit in any run folder; it only ever replaces an earlier softscope report."""
    root = Path(run_dir)
    if not root.is_dir():
        raise SoftscopeError(f"{root} is not a run directory (no such folder)")
    if (root / "config.json").is_file():
        cfg = read_json(root / "config.json")  # invalid JSON: a one-line error naming the file
        if not isinstance(cfg, dict):
            raise SoftscopeError(f"{root / 'config.json'} is a JSON {type(cfg).__name__}, not the object softscope "
                                 "writes: restore it or move it out of the folder")
    view = RunView(root)
    sections = [s for s in (f(view) for f in SECTIONS) if s is not None]
    if not sections:
        raise SoftscopeError(f"{root} holds nothing softscope can report (no config.json, metrics.jsonl, "
                             f"*_summary.json or PNG): pass a folder a softscope command wrote")
    nav = "".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in sections)
    parts = [f'<section id="{s.id}"><h2>{esc(s.title)}</h2>'
             + (f'<div class="summary">{s.summary}</div>' if s.summary else "") + s.body + "</section>"
             for s in sections]
    title = f"softscope report: {root.resolve().name}"
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head><body>'
            f'<header><h1>{esc(title)}</h1><div class="sub">generated {time.strftime("%Y-%m-%d %H:%M:%S")} · '
            f'{len(sections)} sections · self-contained (no network needed)</div></header><nav>{nav}</nav>'
            f'<main>{"".join(parts)}</main></body></html>\n')
    path = Path(out) if out else root / "report.html"
    if path.is_dir() or (path.exists() and "<title>softscope report" not in path.read_text(errors="replace")[:4096]):
        raise SoftscopeError(f"{path} exists and is not a softscope report: choose another --out")
    atomic_write_text(path, page)
    return path


def report_sections(path: str | Path) -> list[str]:
    """The section titles of a written report, in page order."""
    text = Path(path).read_text(encoding="utf-8")
    return [html.unescape(t) for t in re.findall(r'<section id="[^"]*"><h2>(.*?)</h2>', text)]
