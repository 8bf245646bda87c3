"""The explorer's pages as HTML strings: plain server-rendered markup plus data for the small script (serve.js).

Run folders are read through the shared readers (`engine.readers`) and, for the kinds the explorer has no
interactive view of (waywardness, bias, PEZ, RLPrompt, trade-off, explain, eval), through the report's own
sections, so a page and `softscope report` can never disagree about what a folder holds.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from ..engine.readers import RunFacts, RunView, describe_data, find_runs, layer_grid, num, run_facts, training_data
from ..engine.target_prompts import MARKER, POOLS
from ..engine.training import list_checkpoints
from ..methods.describe import PRIMARY_SCORE, SCORES
from ..report import sections as report
from ..report.parts import esc, fmt, or_else
from .paths import Roots

# report sections the explorer shows as they are (tables made sortable by serve.js); training and InSPEcT get
# the explorer's interactive views instead
REPORT_SECTIONS = [report.section_eval, report.section_explain, report.section_bias, report.section_wayward,
                   report.section_tradeoff, report.section_pez, report.section_rlprompt, report.section_interpret,
                   report.section_subruns, report.section_other_plots]


def page(title: str, body: str, data: Any = None) -> str:
    """One page: header, navigation, body, and the page's data as JSON for serve.js (never executed as code)."""
    blob = json.dumps(data if data is not None else {}).replace("</", "<\\/")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)} · softscope serve</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="stylesheet" href="/static/serve.css"></head><body>'
            f'<header><h1><a href="/">softscope</a> · {esc(title)}</h1>'
            f'<nav><a href="/">runs</a><a href="/live">live describe</a></nav></header><main>{body}</main>'
            f'<script type="application/json" id="page-data">{blob}</script>'
            f'<script src="/static/serve.js"></script></body></html>')


def error_box(message: str) -> str:
    return f'<div class="error" role="alert">{esc(message)}</div>'


def cards(facts: dict) -> str:
    """Headline facts as small cards (missing ones left out)."""
    return ('<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(fmt(v))}</div></div>'
        for k, v in facts.items() if v is not None) + "</div>")


def _date(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "—"


# ---- runs list ---------------------------------------------------------------------------------------------
def all_runs(roots: Roots) -> list[RunFacts]:
    """Every run folder under every given folder (a given file is a prompt, listed separately)."""
    out = []
    for root in roots.paths:
        if root.is_dir():
            out += [run_facts(d) for d in find_runs(root)]
    return out


def prompt_files(roots: Roots) -> list[tuple[str, str]]:
    """(reference, label) of every prompt the live page can describe: given files, finals and checkpoints."""
    out = []
    for i, root in enumerate(roots.paths):
        if root.is_file():
            out.append((str(i), root.name))
            continue
        for d in find_runs(root):
            label = str(d.relative_to(root)) if d != root else root.name
            for f in [d / "prompt.safetensors", *list_checkpoints(d)]:
                if f.is_file():
                    out.append((roots.ref(f), f"{label}/{f.relative_to(d)}"))
    return out


def runs_page(roots: Roots) -> str:
    runs = all_runs(roots)
    rows = "".join(
        f'<tr><td><a href="/run/{esc(roots.ref(f.path))}">{esc(f.path.name)}</a></td><td>{esc(f.kind or "—")}</td>'
        f'<td>{esc(f.task or "—")}</td><td>{esc(f.model or "—")}</td>'
        f'<td data-value="{f.accuracy if f.accuracy is not None else ""}">{esc(fmt(f.accuracy))}</td>'
        f'<td data-value="{f.date or 0}">{esc(_date(f.date))}</td><td class="path">{esc(f.path)}</td></tr>'
        for f in runs)
    files = [p for p in roots.paths if p.is_file()]
    body = (f'<p>{len(runs)} run folder(s) under {len(roots.paths)} given path(s). Type to filter; click a column '
            f'to sort.</p><input id="filter" type="search" placeholder="filter runs (kind, task, model, folder)" '
            f'autofocus><table id="runs" class="sortable"><thead><tr><th>run</th><th>kind</th><th>task</th>'
            f'<th>model</th><th>accuracy</th><th>date</th><th>folder</th></tr></thead><tbody>{rows}</tbody></table>')
    if files:
        body += "<h2>Prompt files</h2><ul>" + "".join(
            f'<li><a href="/live?prompt={i}">{esc(p.name)}</a></li>' for i, p in enumerate(roots.paths) if p.is_file()
        ) + "</ul>"
    return page("runs", body)


# ---- one run -----------------------------------------------------------------------------------------------
def run_page(roots: Roots, path: Path, ref: str, projection: dict | None, checkpoint: str | None) -> str:
    """A run folder's page: facts, training view, InSPEcT view, then the report's sections for everything else.

    `projection` is the nearest-token reading of the shown checkpoint ({"error": ...} when the model failed)."""
    view = RunView(path)
    f = run_facts(path)
    body = cards({"kind": f.kind, "task": f.task, "model": f.model, "accuracy": f.accuracy, "date": _date(f.date)})
    body += f'<p class="path">{esc(path)}</p>'
    data: dict[str, Any] = {"run": ref}
    parts = []
    for make in (lambda: training_section(roots, view, ref, projection, checkpoint, data),
                 lambda: describe_section(view, ref, data)):
        try:
            parts.append(make())
        except Exception as e:  # a broken file shows its message on the page, never a traceback
            parts.append(error_box(f"could not read this part of the run: {type(e).__name__}: {e}"))
    for section in REPORT_SECTIONS:
        try:
            s = section(RunView(path))
        except Exception as e:
            parts.append(error_box(f"{section.__name__.removeprefix('section_')}: {type(e).__name__}: {e}"))
            continue
        if s is not None:
            parts.append(f'<section id="{s.id}" class="report"><h2>{esc(s.title)}</h2>'
                         f'<div class="summary">{s.summary}</div>{s.body}</section>')
    body += "".join(p for p in parts if p) or "<p>This folder holds nothing softscope can show.</p>"
    return page(path.name, body, data)


def training_section(roots: Roots, view: RunView, ref: str, projection: dict | None, checkpoint: str | None,
                     data: dict) -> str:
    t = training_data(view)
    if t is None:
        return ""
    data["training"] = {"loss": [[r.step, num(r.loss)] for r in t.train],
                        "accuracy": [[c.step, num(c.accuracy)] for c in t.checkpoints],
                        "final": t.final_accuracy}
    facts = {"task": t.summary.task, "virtual tokens": t.summary.tokens, "steps": t.summary.steps,
             "final accuracy": t.final_accuracy, "seconds": num(t.summary.seconds)}
    body = cards(facts)
    body += ('<div class="charts"><figure><div class="chart" id="loss-chart"></div><figcaption>training loss per '
             'step</figcaption></figure><figure><div class="chart" id="acc-chart"></div><figcaption>checkpoint '
             'accuracy on the seeded eval subset</figcaption></figure></div>')
    rows = []
    for c in t.checkpoints:
        p = view.root / str(c.path or "")
        live = f'<a href="/live?prompt={esc(roots.ref(p))}">describe live</a>' if p.is_file() else ""
        show = f'<a href="/run/{esc(ref)}?checkpoint={esc(c.step)}#tokens">nearest tokens</a>'
        rows.append(f'<tr><td>{esc(c.step)}</td><td>{esc(fmt(num(c.accuracy)))}</td>'
                    f'<td>{esc(c.path or "")}</td><td>{show} · {live}</td></tr>')
    body += ('<h3>Checkpoints</h3><table class="sortable checkpoints"><thead><tr><th>step</th><th>accuracy</th>'
             f'<th>file</th><th></th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    body += '<h3 id="tokens">Nearest vocabulary tokens per virtual token</h3>'
    if projection is None:
        body += "<p>no prompt file to project</p>"
    elif "error" in projection:
        body += error_box(projection["error"])
    else:
        body += tokens_table(projection)
    return f'<section id="training"><h2>Training</h2>{body}</section>'


def tokens_table(p: dict) -> str:
    """Per virtual token: its nearest tokens (L2) and how far it moved from its initial embedding."""
    dist = (p.get("movement") or {}).get("distance")
    rel = (p.get("movement") or {}).get("relative")
    def near(top: list[dict]) -> str:
        return " ".join(f"<code>{esc(repr(x['token']))}</code> {fmt(x['score'], 2)}" for x in top)
    rows = "".join(
        f'<tr><td>{i}</td><td>{near(top)}</td><td>{esc(fmt(dist[i]) if dist else "—")}</td>'
        f'<td>{esc(fmt(rel[i]) if rel else "—")}</td></tr>' for i, top in enumerate(p["top"]))
    warn = (p.get("movement") or {}).get("warning")
    return (f'<p>{esc(p["label"])} on {esc(p["model"])}: nearest tokens by L2 distance (smaller is nearer).</p>'
            + (error_box(warn) if warn else "")
            + '<table class="sortable tokens"><thead><tr><th>virtual token</th><th>nearest tokens (L2 distance)</th>'
            f'<th>distance from init</th><th>relative to init norm</th></tr></thead><tbody>{rows}</tbody></table>')


def describe_section(view: RunView, ref: str, data: dict) -> str:
    d = describe_data(view)
    if d is None:
        return ""
    if not d.rows:
        return ('<section id="describe"><h2>InSPEcT descriptions</h2>'
                + error_box(f"{view.rel(d.summary_path.parent)}/descriptions.jsonl is missing or unreadable") + "</section>")
    cks = [{"name": str(k), "step": rs[0].step, "accuracy": num(rs[0].accuracy)} for k, rs in d.by_checkpoint.items()]
    data["describe"] = {"folder": view.rel(d.summary_path.parent), "checkpoints": cks, "scores": d.score_keys}
    opts = "".join(f'<option value="{esc(c["name"])}">step {esc(c["step"])} · acc {esc(fmt(c["accuracy"]))}</option>'
                   for c in cks)
    scores = "".join(f'<option>{esc(k)}</option>' for k in d.score_keys)
    panel = ('<div class="panel" data-panel="{i}"><label>checkpoint <select class="ck">{opts}</select></label>'
             '<div class="heat"></div><div class="desc" aria-live="polite"><i>hover a cell to read its descriptions; '
             'click to pin</i></div></div>')
    s = d.summary
    body = (f'<p>{esc(or_else(s.task, ""))} · layer grid {esc(or_else(s.layers, "?"))} · {esc(or_else(s.pairs, "?"))} pairs × '
            f'{esc(or_else(s.target_prompts, "?"))} target prompt(s) · {esc(or_else(s.max_new_tokens, "?"))} new tokens. '
            f'Rows: source layer ℓ, columns: target layer ℓ*; colour: the chosen score, averaged over target prompts.</p>'
            f'<div class="controls"><label>score <select id="score">{scores}</select></label> '
            f'<label><input type="checkbox" id="compare"> two checkpoints side by side</label></div>'
            f'<div class="panels">{panel.format(i=0, opts=opts)}{panel.format(i=1, opts=opts)}</div>')
    per = s.checkpoints
    primary = s.primary_score or PRIMARY_SCORE
    pts = []
    for c in per:
        try:
            v = num(c.score(primary))
        except ValueError:
            v = None
        ci = c.accuracy_ci95
        if num(c.accuracy) is not None and v is not None:
            pts.append({"step": c.step, "x": num(c.accuracy), "y": v,
                        "lo": num(ci[0]) if isinstance(ci, list) and len(ci) == 2 else None,
                        "hi": num(ci[1]) if isinstance(ci, list) and len(ci) == 2 else None})
    data["describe"]["scatter"] = {"points": pts, "score": primary}
    if pts:
        body += (f'<figure><div class="chart" id="acc-score"></div><figcaption>checkpoint accuracy (with its 95% '
                 f'interval) vs the primary score {esc(primary)}; hover a point for its values</figcaption></figure>')
    if per:
        dicts = [c.shown() for c in per]
        cols = [k for k in ("step", "accuracy", *SCORES) if any(k in d or k.startswith("best.") for d in dicts)]
        rows = []
        for c in per:
            cells = []
            for k in cols:
                try:
                    v = c.score(k) if k in SCORES else c.value(k)
                except ValueError:
                    v = None
                cells.append(f"<td>{esc(fmt(v))}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        body += ('<h3>Per checkpoint</h3><table class="sortable"><thead><tr>' + "".join(f"<th>{esc(k)}</th>" for k in cols)
                 + f'</tr></thead><tbody>{"".join(rows)}</tbody></table>')
    body += f'<p><a href="/live?prompt={esc(ref)}">describe a checkpoint live with your own target prompt →</a></p>'
    return f'<section id="describe"><h2>InSPEcT descriptions</h2>{body}</section>'


def grid_json(view: RunView, checkpoint: str, score: str) -> dict:
    """One checkpoint's layer grid for the heatmap: cells [source, target, mean score, texts], the score range."""
    d = describe_data(view)
    if d is None:
        raise FileNotFoundError("this run has no InSPEcT descriptions")
    rows = next((rs for k, rs in d.by_checkpoint.items() if str(k) == checkpoint), None)
    if rows is None:
        raise FileNotFoundError(f"no checkpoint {checkpoint!r} in this run's descriptions")
    if score not in d.score_keys:
        raise ValueError(f"unknown score {score!r}: use {', '.join(d.score_keys)}")
    grid = layer_grid(rows, score)
    vals = [c.score for c in grid.values() if c.score is not None]
    return {"checkpoint": checkpoint, "step": rows[0].step, "accuracy": num(rows[0].accuracy),
            "score": score, "lo": min(vals) if vals else 0.0, "hi": max(vals) if vals else 1.0,
            "cells": [[s, t, c.score, [dataclasses.asdict(x) for x in c.texts]] for (s, t), c in sorted(grid.items())]}


# ---- live --------------------------------------------------------------------------------------------------
def live_page(roots: Roots, chosen: str | None, limits: dict) -> str:
    files = prompt_files(roots)
    if chosen and chosen not in {r for r, _ in files}:  # a run folder: preselect its last checkpoint
        under = [r for r, _ in files if r.startswith(chosen.rstrip("/") + "/")]
        chosen = under[-1] if under else chosen
    opts = "".join(f'<option value="{esc(r)}"{" selected" if r == chosen else ""}>{esc(label)}</option>'
                   for r, label in files)
    pools = "".join(f"<option>{esc(p)}</option>" for p in POOLS)
    body = (
        '<form id="live-form" class="live">'
        f'<label>prompt / checkpoint <select name="prompt" id="prompt">{opts}</select></label>'
        '<label>or upload a prompt file (.safetensors) <input type="file" id="upload" accept=".safetensors"></label>'
        f'<label>target prompt <select id="pool"><option value="">your own text ↓</option>{pools}</select></label> '
        '<label>pool seed <input id="seed" type="number" min="0" value="0" size="6"></label>'
        f'<textarea name="target_prompt" id="target" rows="3" maxlength="{limits["max_text"]}" placeholder="e.g. '
        f'The task is: {MARKER}">The task is: {MARKER}</textarea>'
        f'<div class="row"><label>layer pairs (source:target) <input name="layers" id="layers" value="1:1,2:2,3:1" '
        f'size="24"></label> <label>new tokens <input name="max_new_tokens" id="tokens" type="number" min="1" '
        f'max="{limits["max_new_tokens"]}" value="24"></label> <label>stop <select name="stop" id="stop">'
        '<option>eos</option><option>none</option><option>paper</option></select></label> '
        '<button type="submit" id="run">run</button> <button type="button" id="stop-btn" disabled>stop</button></div>'
        f'<p class="note">Up to {limits["max_pairs"]} pairs and {limits["max_new_tokens"]} tokens; the text streams in '
        f'as the model writes it. Requests arriving together share one engine batch. Equals <code>softscope describe '
        f'PROMPT --target-prompt TEXT --layers PAIRS --max-new-tokens N --stop S</code>.</p></form>'
        '<div id="status" aria-live="polite"></div><p class="note">the same descriptions from the command line: '
        '<code id="command"></code></p><table id="live-out"><thead><tr><th>ℓ→ℓ*</th><th>description'
        '</th><th>cut</th></tr></thead><tbody></tbody></table>')
    return page("live describe", body, {"limits": limits})
