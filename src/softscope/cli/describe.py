"""`softscope describe`: InSPEcT descriptions of a run's checkpoints (or one prompt) over a layer grid."""

from __future__ import annotations

from pathlib import Path

import click

from ..engine.errors import SoftscopeError
from ..engine.inputs import read_json_file, read_text_file
from ..methods.describe import PRIMARY_SCORE, DescribeConfig, describe, score_of
from .options import build_config, config_options, echo_json, fmt_num


def _reference_option(values: tuple[str, ...]) -> list[str] | None:
    """Reference texts from repeated --references: each a text, a .txt file (one per line) or a .json list.

    A value naming an existing path must be a .txt or .json file (a folder or another file is refused, not taken
    as a literal text); a value ending in .txt/.json must exist.
    """
    out: list[str] = []
    for v in values:
        p = Path(v).expanduser()
        if p.suffix in (".txt", ".json") or p.exists():
            if p.exists() and not p.is_dir() and p.suffix not in (".txt", ".json"):
                raise SoftscopeError(f"--references {v} is a {p.suffix or 'suffix-less'} file: pass a .txt (one "
                                     "reference per line) or .json list, or quote a reference text")
            if p.suffix == ".json":
                data = read_json_file(p, "--references file")
                items = list(data.values()) if isinstance(data, dict) else data if isinstance(data, list) else None
                if items is None or not all(isinstance(x, str) for x in items):
                    raise SoftscopeError(f"--references file {v} must hold a JSON list (or object) of strings")
                out += items
            else:
                text = read_text_file(p, "--references file")
                out += [line.strip() for line in text.splitlines() if line.strip()]
        else:
            out.append(v)
    return out or None


@click.command("describe")
@click.argument("source", type=click.Path())
@config_options(DescribeConfig, exclude=("references",))
@click.option("--references", "refs", multiple=True,
              help="extra reference description (repeat the option), or a .txt (one per line) / .json file")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="output folder (default: RUN_DIR/describe, or <prompt>-describe beside a prompt file)")
@click.option("--json", "as_json", is_flag=True, help="print describe_summary.json instead of a table")
def describe_cmd(source, refs, out, as_json, **kw):
    """Let the model describe its soft prompt (InSPEcT): every checkpoint x every layer pair x target prompt.

    SOURCE is a training run dir (all its checkpoints), a prompt file, or a PEFT prompt-tuning adapter dir.
    Writes descriptions.jsonl, describe_summary.json, heatmap_class_rate.png and accuracy_vs_score.png.
    """
    cfg = build_config(DescribeConfig, {**kw, "references": _reference_option(refs)})
    res = describe(source, cfg, out=out)
    if as_json:
        return echo_json(res.summary)
    show_summary(res)


def show_summary(res) -> None:
    """The per-checkpoint table, correlations and (elaborated) unexpected words of a describe result."""
    s = res.summary
    click.echo(f"{s['task']} ({', '.join(s['classes'])}) · {s['model']} · {s['pairs']} layer pairs x "
               f"{s['target_prompts']} target prompts · {s['max_new_tokens']} new tokens · source pass "
               f"{s.get('source_pass', 'embeddings')}, stop {s.get('stop', 'eos')}, cut {s.get('cut', 'softscope')}")
    click.echo(f"{'step':>6} {'acc':>5} | {'max':>5} {'mean':>5} {'all':>5} | {'max':>5} {'top-k':>5} | {'max':>5}"
               f" | best description (by similarity; source→target layer)")
    click.echo(f"{'':>6} {'':>5} | {'class rate':^17} | {'similarity':^11} | {'R-1':>5} |")
    for c in s["checkpoints"]:
        b = c["best"]["similarity"]
        click.echo(f"{c['step']:>6} {fmt_num(c['accuracy'])} | {fmt_num(score_of(c, 'best.class_rate'))} "
                   f"{fmt_num(c['class_rate_mean'])} {fmt_num(c['naming_share'])} | "
                   f"{fmt_num(score_of(c, 'best.similarity'))} "
                   f"{fmt_num(c['similarity_topk'])} | {fmt_num(score_of(c, 'best.rouge1'))} | "
                   f"{b['source_layer']}→{b['target_layer']}: {b['cut'][:70]!r}"
                   + (" [copies a target-prompt demo]" if b.get("copies_demo") else ""))
        if c.get("copies"):
            click.echo(f"{'':>6} {c['copies']} descriptions copy a target-prompt demonstration"
                       + (": left out of best" if c.get("best_excludes_copies") else " (all of them: kept)"))
    c = s.get("control")
    if c is not None:  # --control: the prompt e(true description) on the same grid
        b = c["best"]["similarity"]
        click.echo(f"{'ctrl':>6} {'':>5} | {fmt_num(score_of(c, 'best.class_rate'))} {fmt_num(c['class_rate_mean'])} "
                   f"{fmt_num(c['naming_share'])} | {fmt_num(score_of(c, 'best.similarity'))} "
                   f"{fmt_num(c['similarity_topk'])} | "
                   f"{fmt_num(score_of(c, 'best.rouge1'))} | {b['source_layer']}→{b['target_layer']}: {b['cut'][:70]!r}")
        click.echo(f"  positive control = e({c['text']!r}), {c['tokens']} tokens")
    if s["correlation"]:
        primary = s.get("primary_score", PRIMARY_SCORE)

        def rho(key):
            c = s["correlation"][key]
            ci = c.get("spearman_ci95")
            return (f"  {key:<18} ρ = {fmt_num(c['spearman'])}" + (f" [{fmt_num(ci[0])}, {fmt_num(ci[1])}]" if ci else "")
                    + f"  (p = {fmt_num(c['spearman_p'])}, n = {c['n']})")
        click.echo("Spearman ρ of checkpoint accuracy with the primary score (fixed in advance; 95% bootstrap"
                   " interval):")
        click.echo(rho(primary))
        click.echo("secondary scores (exploratory: several were tried, so a small p here is not evidence):")
        for key in ("best.class_rate", "class_rate_mean", "naming_share", "best.similarity", "similarity_topk",
                    "best.rouge1"):
            if key != primary:
                click.echo(rho(key))
    words = s["checkpoints"][-1].get("unexpected_words")
    if words is not None:  # --elaborated
        click.echo(f"words the descriptions of step {s['checkpoints'][-1]['step']} mention beyond class names, references"
                   f" and target-prompt demos (share of {s['pairs'] * s['target_prompts']} descriptions):")
        click.echo("  " + (", ".join(f"{w['word']} ({w['share']:.2f})" for w in words) or "(none)"))
    click.echo(f"written to {res.out_dir} ({res.seconds:.0f} s): descriptions.jsonl, describe_summary.json, "
               + ", ".join(p.name for p in res.plots))


COMMANDS = [describe_cmd]
