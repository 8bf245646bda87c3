"""CLI for the discrete-prompt methods: `pez`, `rlprompt`, `interpret`, `tradeoff` (parse → config → API → print)."""

from __future__ import annotations

from pathlib import Path

import click

from ..engine.stats import fmt_ci, fmt_paired
from ..methods.interpret import InterpretConfig, interpret
from ..methods.pez import PezConfig, pez
from ..methods.rlprompt import RLPromptConfig, rlprompt
from ..methods.tradeoff import TradeoffConfig, tradeoff
from .options import build, config_options, echo_json


def _fmt(x, spec=".3f") -> str:
    return "-" if x is None else format(x, spec)


def _table(rows: list[dict]) -> None:
    click.echo(f"{'weight':>7}  {'test acc [95% interval]':>23}  {'perplexity':>10}  {'step':>5}  prompt")
    for r in rows:
        acc = "-" if r["test_accuracy"] is None else fmt_ci(r["test_accuracy"], r.get("test_ci95"))
        click.echo(f"{r['fluency_weight']:>7g}  {acc:>23}  {r['perplexity']:>10.1f}  "
                   f"{r['selected_step']:>5}  {r['text']!r}")


@click.command("pez")
@config_options(PezConfig)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="run directory (one w-<weight>/ per weight)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def pez_cmd(out, as_json, **kw):
    """PEZ hard prompts (projected gradient, cosine) with the fluency objective, one per --fluency-weight."""
    summary = pez(build(PezConfig, kw), out)
    if as_json:
        return echo_json(summary)
    _table(summary["runs"])
    click.echo(f"run directory: {out}  (pez_curves.png: held-out accuracy per step)")


@click.command("rlprompt")
@config_options(RLPromptConfig)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="run directory (one w-<weight>/ per weight)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def rlprompt_cmd(out, as_json, **kw):
    """RLPrompt (soft Q-learning of an MLP-on-LM policy) with the fluency reward, one per --fluency-weight."""
    summary = rlprompt(build(RLPromptConfig, kw), out)
    if as_json:
        return echo_json(summary)
    _table(summary["runs"])
    click.echo(f"run directory: {out}  (rlprompt_curves.png, rlprompt_rewards.png)")


@click.command("interpret")
@click.argument("prompt_path", type=click.Path())
@config_options(InterpretConfig)
@click.option("--out", default=None, type=click.Path(file_okay=False), help="also write interpret_summary.json here")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def interpret_cmd(prompt_path, out, as_json, **kw):
    """Faithfulness and scrutability of a discrete reading of a soft prompt (file, run dir or PEFT dir)."""
    rep = interpret(build(InterpretConfig, kw), prompt_path, out)
    if as_json:
        return echo_json(rep)
    f, s, t = rep["faithfulness"], rep["scrutability"], rep["thresholds"]
    for o in rep.get("overrides", []):
        click.echo(f"override: {o['field']} = {o['used']!r} (the prompt's: {o['recorded']!r})")
    click.echo(f"reading ({rep['reading']}): {rep['text']!r}  [{rep['tokens']} tokens"
               + ("" if rep["text_roundtrip"] else "; the text re-tokenises differently: scored by its ids") + "]")
    click.echo(f"faithfulness on {f['examples']} {rep['task']} test examples "
               f"({rep['truncated']} inputs truncated to max length {rep['max_length']}):")
    click.echo(f"  agreement with the soft prompt {fmt_ci(f['agreement'], f['agreement_ci95'])}   (faithful if >= "
               f"{t['min_agreement']:g}: {'yes' if rep['faithful'] else 'no'})")
    click.echo(f"  accuracy soft {fmt_ci(f['prompt_accuracy'], f['prompt_accuracy_ci95'])} / reading "
               f"{fmt_ci(f['reading_accuracy'], f['reading_accuracy_ci95'])}   KL(soft || reading) {f['kl']:.3f}")
    click.echo(f"  accuracy gap soft − reading: {fmt_paired(f['paired'])}")
    click.echo("scrutability:")
    click.echo(f"  perplexity {s['perplexity']:.1f}   dictionary words {s['dictionary_share']:.2f}"
               f"   (scrutable if <= {t['max_perplexity']:g} and >= {t['min_dictionary_share']:g}: "
               f"{'yes' if rep['scrutable'] else 'no'})")
    click.echo(f"interpretable: {'yes' if rep['interpretable'] else 'no'}")


@click.command("tradeoff")
@config_options(TradeoffConfig)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="run directory")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def tradeoff_cmd(out, as_json, **kw):
    """PEZ and RLPrompt weight sweeps beside a soft prompt: accuracy vs perplexity / faithfulness, odd prompts."""
    summary = tradeoff(build(TradeoffConfig, kw), out)
    if as_json:
        return echo_json(summary)
    click.echo(f"{summary['task']} ({summary['examples']} test examples), {summary['model']}")
    click.echo(f"{'method':<18} {'weight':>6} {'acc':>6} {'ppl':>9} {'dict':>5} {'agree':>6} {'KL':>6}  prompt")
    for r in summary["rows"]:
        w = "" if r["weight"] is None else f"{r['weight']:g}"
        click.echo(f"{r['method']:<18} {w:>6} {r['accuracy']:>6.3f} {_fmt(r['perplexity'], '.1f'):>9} "
                   f"{_fmt(r['dictionary_share'], '.2f'):>5} {r['agreement']:>6.3f} {r['kl']:>6.3f}  "
                   f"{'' if r['text'] is None else repr(r['text'])}")
    if summary["odd_prompts_by_perplexity"]:
        click.echo("odd prompts, lowest perplexity first (* = passes the perplexity threshold, i.e. the proxy favours it):")
        for r in summary["odd_prompts_by_perplexity"][:5]:
            star = "*" if r.get("passes_perplexity") else " "
            click.echo(f" {star}{r['perplexity']:>9.1f}  {r['text']!r}  ({r['method']} {r['weight']}: {'; '.join(r['odd'])})")
    click.echo(f"plots: {Path(out) / 'tradeoff_perplexity.png'}, {Path(out) / 'tradeoff_faithfulness.png'}")


COMMANDS = [pez_cmd, rlprompt_cmd, interpret_cmd, tradeoff_cmd]
