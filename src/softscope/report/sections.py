"""One section per thing a run folder can hold, each read from its declared records: the run, training, explain,
InSPEcT descriptions, the bias probe, waywardness, the trade-off, PEZ, RLPrompt, interpret, eval, sub-runs and any
other plots. A section returns None when the folder holds nothing of its kind."""
# size: one short function per kind of run data, in page order; apart they would scatter what one page shows.

from __future__ import annotations

from typing import Any, Callable

from ..engine.readers import RunView, describe_data, layer_grid, num, record_at, run_facts, training_data
from ..records import (CheckpointScores, EvalSummary, ExplainReading, ExplainSummary, Faithfulness, InterpretRecord,
                       Record, RunConfig, Scrutability, SoftPromptFacts)
from .parts import (Raw, Section, embed_png, esc, figure, fmt, heatmap_table, kv_table, or_else, table, _short)


def section_run(view: RunView) -> Section | None:
    p, cfg = view.json(RunConfig.file(), depth=0)
    if not isinstance(cfg, RunConfig):
        return None
    body = kv_table({k: v for k, v in cfg.facts().items() if v is not None})
    if cfg.prompt_settings:  # engine.carry: what every reading command scores the prompt with by default
        body += "<h3>What the prompt remembers</h3>" + kv_table({k: v for k, v in cfg.prompt_settings.items()
                                                                  if v is not None})
    body += f"<details><summary>full config.json</summary>{kv_table(cfg.config if isinstance(cfg.config, dict) else {})}"
    if cfg.versions:
        body += kv_table(cfg.versions)
    body += "</details>"
    return Section("run", "Run", body, f"{esc(view.root.resolve())}")


def section_training(view: RunView) -> Section | None:
    data = training_data(view)
    if data is None:
        return None
    summ, train, cks, extra_terms = data.summary, data.train, data.checkpoints, data.extra_terms
    final = data.final_accuracy
    best = max(cks, key=lambda c: num(c.accuracy) or -1) if cks else None
    cut = summ.truncated
    facts = {"task": summ.task, "model": summ.model, "virtual tokens": summ.tokens,
             "steps": summ.steps, "final accuracy": final,
             "final eval examples": (f"{summ.final_eval_examples} of {summ.test_examples_total}"
                                     if summ.test_examples_total else summ.final_eval_examples),
             "truncated inputs": f"{cut.test} test, {cut.train} train" if cut is not None else None,
             "best checkpoint": f"step {best.step}: {fmt(num(best.accuracy))}" if best else None,
             "seconds": num(summ.seconds)}
    body = '<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{esc(k)}</div><div class="v" data-key="{esc(k)}">{esc(fmt(v))}</div></div>'
        for k, v in facts.items() if v is not None) + "</div>"

    def draw(fig):
        ax1 = fig.add_subplot(1, 2, 1)
        if train:
            xs, ys = [r.step for r in train], [float(r.loss) for r in train]
            ax1.plot(xs, ys, color="#9ab", lw=0.8, label="loss")
            k = max(1, len(ys) // 20)
            sm = [sum(ys[max(0, i - k + 1):i + 1]) / len(ys[max(0, i - k + 1):i + 1]) for i in range(len(ys))]
            ax1.plot(xs, sm, color="#1f5f8b", lw=1.6, label=f"mean of {k}")
            for term in extra_terms:
                ax1.plot(xs, [float(r.values.get(term, float("nan"))) for r in train], lw=1, label=term)
            ax1.legend(fontsize=7)
        ax1.set_xlabel("step")
        ax1.set_title("training loss", fontsize=9)
        ax2 = fig.add_subplot(1, 2, 2)
        if cks:
            ax2.plot([c.step for c in cks], [num(c.accuracy) for c in cks], marker="o", color="#c05020")
        if final is not None:
            ax2.axhline(final, ls="--", color="#555", lw=1, label=f"final {fmt(final)}")
            ax2.legend(fontsize=7)
        ax2.set_xlabel("step")
        ax2.set_ylim(0, 1)
        ax2.set_title("checkpoint accuracy", fontsize=9)

    body += figure(draw, (8.0, 3.0), "training loss per step; accuracy of each checkpoint on the seeded eval subset")
    if cks:
        body += "<h3>Checkpoints</h3>" + table(["step", "accuracy", "file"],
                                               [[c.step, num(c.accuracy), c.path or ""] for c in cks],
                                               "checkpoints")
    line = f"final accuracy {fmt(final)}" if final is not None else f"{len(train)} steps logged"
    return Section("training", "Training", body, line)


def section_explain(view: RunView) -> Section | None:
    found = [(p, s) for p in view.files(ExplainSummary.file())
             if isinstance(s := record_at(p, ExplainSummary), ExplainSummary)]
    if not found:
        return None
    body = ""
    for p, s in found:
        sp = s.soft_prompt or SoftPromptFacts()
        if len(found) > 1:
            body += f"<h3>{esc(view.rel(p.parent))}</h3>"
        body += (f"<p>Prompt <code>{esc(or_else(s.prompt, ''))}</code> ({esc(or_else(sp.n_tokens, '?'))} virtual tokens, "
                 f"step {esc(or_else(sp.step, '?'))}) on {esc(or_else(s.task, '?'))}, {esc(or_else(s.model, '?'))}.</p>")
        body += explain_html(s)
    return Section("explain", "Explain: one soft prompt, read three ways", body,
                   "nearest-token projection, best InSPEcT description and a PEZ hard prompt, each used as a prompt")


def explain_html(s: ExplainSummary) -> str:
    """The side-by-side table of readings with their faithfulness and scrutability."""
    readings = s.readings
    if not readings:
        return "<p>no readings</p>"
    base = s.soft_prompt or SoftPromptFacts()
    cols = ["reading", "text", "agreement", "accuracy", "acc. gap", "KL(soft‖reading)", "perplexity",
            "dictionary words", "interpretable"]
    rows = [["soft prompt itself", Raw(f"<i>{esc(or_else(base.n_tokens, '?'))} virtual tokens</i>"), 1.0,
             num(base.accuracy), 0.0, 0.0, None, None, None]]
    for r in readings:
        if r.skipped:
            rows.append([or_else(r.name, "?"), Raw(f'<i>skipped: {esc(r.skipped)}</i>'), None, None, None, None,
                         None, None, None])
            continue
        f, sc = r.faithfulness or Faithfulness(), r.scrutability or Scrutability()
        rows.append([or_else(r.name, or_else(r.method, "?")), Raw(f'<code class="reading">{esc(or_else(r.text, ""))}</code>'),
                     num(f.agreement), num(f.reading_accuracy), num(f.accuracy_gap), num(f.kl), num(sc.perplexity),
                     num(sc.dictionary_share), _verdict(r)])
    out = table(cols, rows, "explain")
    out += (f"<p class='note'>Each reading's tokens take the soft prompt's place before the input. Faithfulness: "
            f"agreement of its predictions with the soft prompt's, its accuracy, the accuracy gap (soft − reading) "
            f"and KL between the label distributions, on {esc(or_else(s.examples, '?'))} seeded test examples. "
            f"Scrutability: perplexity of the text under the LM and the share of its words that are dictionary "
            f"words. Measures from {esc(or_else(s.measures, '?'))}.</p>")
    for r in readings:
        if r.details:
            out += f"<details><summary>{esc(or_else(r.name, ''))}: details</summary>{_details_html(r.details)}</details>"
    return out


def _verdict(r: ExplainReading) -> str | None:
    if r.interpretable is None:
        return None
    if r.interpretable:
        return "yes"
    why = [w for w, ok in (("not faithful", r.faithful), ("not scrutable", r.scrutable)) if ok is False]
    return "no (" + ", ".join(why) + ")" if why else "no"


def _details_html(det: Any) -> str:
    if isinstance(det, list) and det and isinstance(det[0], dict):
        keys = list(dict.fromkeys(k for d in det for k in d))[:8]
        return table(keys, [[d.get(k) if not isinstance(d.get(k), (dict, list)) else _short(d.get(k)) for k in keys]
                            for d in det[:40]])
    if isinstance(det, dict):
        return kv_table(det)
    return f"<pre>{esc(_short(det, 2000))}</pre>"


# InSPEcT (`methods/describe`): descriptions.jsonl rows are one (checkpoint, target prompt, layer pair) each with
# their scores; describe_summary.json holds per-checkpoint aggregates and their correlations with accuracy.
def _cell(v: Any) -> Any:
    """A table cell from any JSON value (lists of words joined, other structures shortened)."""
    if isinstance(v, list):
        return ", ".join(str(x[0] if isinstance(x, (list, tuple)) and x else x) for x in v[:12])
    return _short(v) if isinstance(v, dict) else v


def _layer_grid(rows: list, key: str) -> dict[tuple[int, int], tuple[float | None, str]]:
    """The shared layer grid with every target prompt's text joined into one hover text per cell."""
    return {k: (c.score, "\n".join((f"[target prompt {t.seed}] " if t.seed is not None else "")
                                   + f"{fmt(t.score, 2)}: {t.text}" for t in c.texts))
            for k, c in layer_grid(rows, key).items()}


def section_describe(view: RunView) -> Section | None:
    data = describe_data(view)
    if data is None:  # descriptions.jsonl alone (e.g. a bias probe's sub-runs) is another method's data
        return None
    summ, spath, rows, dpath, by_ck = data.summary, data.summary_path, data.rows, data.rows_path, data.by_checkpoint
    key = data.score_keys[0] if data.score_keys else None
    body = ""
    if summ.task or summ.pairs:
        body += ('<div class="cards">' + "".join(
            f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(fmt(v))}</div></div>'
            for k, v in (("task", summ.task), ("layer grid", summ.layers), ("layer pairs", summ.pairs),
                         ("target prompts", summ.target_prompts), ("new tokens", summ.max_new_tokens))
            if v is not None) + "</div>")
    # the best description of every checkpoint, with its scores (from the rows: the max over the whole grid)
    score_cols = data.score_keys[:5]
    best_rows = []
    for ck, rs in by_ck.items():
        top = max(rs, key=lambda r: num(r.score(key)) if num(r.score(key)) is not None else -1e9) if key else rs[0]
        best_rows.append([or_else(top.step, ck), num(top.accuracy),
                          f"{or_else(top.source_layer, '?')}→{or_else(top.target_layer, '?')}",
                          Raw(f'<span class="desc">{esc(top.shown_text)}</span>'),
                          *[num(top.score(k)) for k in score_cols]])
    if best_rows:
        body += (f"<h3>Best description per checkpoint (by {esc(key or 'order')})</h3>"
                 + table(["step", "accuracy", "layers ℓ→ℓ*", "description", *score_cols], best_rows, "describe"))
    # per-checkpoint aggregates and the correlation with accuracy (describe_summary.json)
    per_ck = summ.checkpoints
    if per_ck:
        cols = CheckpointScores.table_columns(per_ck)
        body += "<h3>Per checkpoint (aggregates over the grid and target prompts)</h3>" + table(
            cols, [[_cell(c.value(k)) for k in cols] for c in per_ck], "describe-ck")
    if summ.correlation:
        crow = [[k, num(v.spearman), num(v.spearman_p), num(v.pearson), v.n] for k, v in summ.correlation.items()]
        body += ("<h3>Description quality vs accuracy (Spearman ρ over checkpoints)</h3>"
                 + table(["score", "spearman ρ", "p", "pearson r", "n"], crow, "correlation"))
    # describe's own plots (heatmap, accuracy vs score); else accuracy vs best score drawn here
    folder = (dpath or spath).parent
    pngs = [p for p in view.files("*.png") if p.parent == folder]
    for p in pngs:
        body += embed_png(view, p)
    pts = [(r[1], r[4]) for r in best_rows if r[1] is not None and len(r) > 4 and r[4] is not None]
    if not pngs and len(pts) > 1:
        def draw(fig):
            ax = fig.add_subplot(1, 1, 1)
            ax.plot([a for a, _ in pts], [b for _, b in pts], "o-", color="#1f5f8b")
            ax.set_xlabel("checkpoint accuracy")
            ax.set_ylabel(f"best {key}")
        body += figure(draw, (4.6, 3.2), f"accuracy vs best {key} per checkpoint")
    # the layer-grid heatmap of the last checkpoint, every text on hover
    if by_ck and key:
        last = max(by_ck, key=lambda ck: num(by_ck[ck][0].step) or 0)
        grid = _layer_grid(by_ck[last], key)
        if grid:
            body += (f"<h3>Layer grid, step {esc(or_else(by_ck[last][0].step, last))}: hover a cell to read its "
                     f"descriptions</h3>" + heatmap_table(grid, key, f"mean {key} over target prompts per "
                                                            f"(source ℓ, target ℓ*) layer pair"))
    if not body:
        body = kv_table(summ.shown())
    where = view.rel(dpath or spath)
    return Section("describe", "InSPEcT descriptions", body,
                   f"{len(rows)} descriptions over {len(by_ck)} checkpoint(s), from {esc(where)}")


def summary_html(summ: dict, sid: str) -> str:
    """Any *_summary.json: scalars as a field table, lists of records and dicts of records as tables."""
    out = ""
    flat = {k: v for k, v in summ.items() if not isinstance(v, (list, dict))}
    if flat:
        out += kv_table(flat)
    for k, v in summ.items():
        if isinstance(v, list) and v and all(isinstance(d, dict) for d in v):
            keys = [c for c in dict.fromkeys(c for d in v for c in d)
                    if all(not isinstance(d.get(c), (dict, list)) for d in v)][:12]
            out += f"<h3>{esc(k)}</h3>" + table(keys, [[d.get(c) for c in keys] for d in v[:60]], f"{sid}-{k}")
        elif isinstance(v, dict) and v and all(isinstance(d, dict) for d in v.values()):
            keys = [c for c in dict.fromkeys(c for d in v.values() for c in d)
                    if all(not isinstance(d.get(c), (dict, list)) for d in v.values())][:11]
            out += f"<h3>{esc(k)}</h3>" + table([k, *keys], [[name, *[d.get(c) for c in keys]] for name, d in v.items()],
                                                f"{sid}-{k}")
    return out


def _method_section(view: RunView, sid: str, title: str, stem: str, plot_title: str, always_plot: bool = False,
                    log_x: bool = False) -> Section | None:
    """A method's section from <stem>_summary.json / <stem>.jsonl: its summary tables, a trade-off scatter over the
    fields its row record names in PLOT (drawn here unless the method wrote its own plots, or always), the per-item
    rows and the method's own PNGs."""
    own = RunView(view.root, view.used_pngs, skip_prefix="explain")  # explain's PEZ reading is not a PEZ run
    p, summ = own.json(f"{stem}_summary.json")
    q, rows = own.jsonl(f"{stem}.jsonl")
    if summ is None and not rows:
        return None
    where = p or q
    from_summary = not rows
    if from_summary:  # a summary holding the per-run list
        rows = [r for r in summ.items() if isinstance(r, Record)]
    pngs = [f for f in own.files("*.png") if f.parent == where.parent and f.resolve() not in view.used_pngs]
    body = summary_html(summ.shown() if summ is not None else {}, sid)
    x_keys, y_keys, label_keys = type(rows[0]).PLOT if rows and type(rows[0]).PLOT else ((), (), ("",))
    xk = next((k for k in x_keys if any(num(r.value(k)) is not None for r in rows)), None)
    yk = next((k for k in y_keys if any(num(r.value(k)) is not None for r in rows)), None)
    pts = [(num(r.value(xk)), num(r.value(yk)), next((r.value(k) for k in label_keys if r.value(k) is not None), None))
           for r in rows if num(r.value(xk)) is not None and num(r.value(yk)) is not None] if xk and yk else []
    if pts and (always_plot or not pngs):
        def draw(fig):
            ax = fig.add_subplot(1, 1, 1)
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="#c05020", zorder=3)
            if len(pts) <= 16:
                for x, y, lab in pts:
                    if lab is not None:
                        ax.annotate(fmt(lab, 4) if isinstance(lab, float) else str(lab)[:28], (x, y), fontsize=7,
                                    xytext=(3, 3), textcoords="offset points")
            if log_x and all(p[0] > 0 for p in pts):
                ax.set_xscale("log")
            ax.set_xlabel(xk)
            ax.set_ylabel(yk)
            ax.set_title(plot_title, fontsize=9)
        body += figure(draw, (5.0, 3.4), f"{plot_title}: {yk} vs {xk} (one point per {label_keys[0]})")
    for f in pngs:
        body += embed_png(view, f)
    if rows and not from_summary:
        dicts = [r.shown() for r in rows]
        keys = [k for k in dict.fromkeys(k for d in dicts for k in d)
                if all(not isinstance(d.get(k), (dict, list)) for d in dicts)][:12]
        body += (f"<details><summary>{len(rows)} rows of {esc(view.rel(q) if q else stem)}</summary>"
                 + table(keys, [[d.get(k) for k in keys] for d in dicts[:200]], sid) + "</details>")
    return Section(sid, title, body, f"from {esc(view.rel(where))}")


def section_wayward(view: RunView) -> Section | None:
    return _method_section(view, "wayward", "Prompt waywardness", "wayward", "waywardness trade-off")


def section_tradeoff(view: RunView) -> Section | None:
    return _method_section(view, "tradeoff", "PEZ / RLPrompt trade-off", "tradeoff", "accuracy vs perplexity",
                           log_x=True)


def section_pez(view: RunView) -> Section | None:
    return _method_section(view, "pez", "PEZ hard prompts", "pez", "PEZ trade-off", always_plot=True, log_x=True)


def section_rlprompt(view: RunView) -> Section | None:
    return _method_section(view, "rlprompt", "RLPrompt discrete prompts", "rlprompt", "RLPrompt trade-off",
                           always_plot=True, log_x=True)


def section_interpret(view: RunView) -> Section | None:
    """`softscope interpret` output: one reading with its faithfulness and scrutability (the explain table)."""
    own = RunView(view.root, view.used_pngs, skip_prefix="explain")
    p, s = own.json(InterpretRecord.file())
    if not isinstance(s, InterpretRecord) or s.faithfulness is None:
        return _method_section(view, "interpret", "Interpretability", "interpret", "faithfulness vs scrutability")
    f = s.faithfulness
    reading = ExplainReading(name=or_else(s.reading, "reading"), method=s.reading, text=s.text, ids=s.ids,
                             faithfulness=f, scrutability=s.scrutability, faithful=s.faithful, scrutable=s.scrutable,
                             interpretable=s.interpretable, text_roundtrip=s.text_roundtrip)
    fake = ExplainSummary(readings=[reading], examples=f.examples,
                          soft_prompt=SoftPromptFacts(accuracy=f.prompt_accuracy), measures="softscope.interpret")
    return Section("interpret", "Interpretability of a reading", explain_html(fake), f"from {esc(view.rel(p))}")


def section_bias(view: RunView) -> Section | None:
    return _method_section(view, "bias", "Bias probe", "bias", "bias mentions vs biased predictions")


def section_eval(view: RunView) -> Section | None:
    p, s = view.json(EvalSummary.file())
    if not isinstance(s, EvalSummary):
        return None
    return Section("eval", "Evaluation", kv_table(s.shown()), f"accuracy {fmt(num(s.accuracy))}")


def section_subruns(view: RunView) -> Section | None:
    subs = [p.parent for p in view.files(RunConfig.file(), depth=2) if p.parent != view.root]
    if not subs:
        return None
    rows = []
    for d in subs:
        f = run_facts(d)
        rows.append([str(d.relative_to(view.root)), f.command, ", ".join(f.summaries) or "—", f.accuracy])
    return Section("subruns", "Sub-runs", table(["folder", "command", "summaries", "accuracy"], rows, "subruns"),
                   f"{len(rows)} folder(s) with their own config.json")


def section_other_plots(view: RunView) -> Section | None:
    rest = [p for p in view.files("*.png") if p.resolve() not in view.used_pngs]
    if not rest:
        return None
    return Section("plots", "Other plots", "".join(embed_png(view, p) for p in rest[:24]), f"{len(rest)} PNG file(s)")


SECTIONS: list[Callable[[RunView], Section | None]] = [
    section_run, section_training, section_eval, section_explain, section_describe, section_bias, section_wayward,
    section_tradeoff, section_pez, section_rlprompt, section_interpret, section_subruns, section_other_plots]
