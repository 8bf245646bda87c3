"""CLI for `tradeoff`: PEZ and RLPrompt weight sweeps beside a soft prompt (parse → config → API → print)."""

from __future__ import annotations

from pathlib import Path

import click

from ..methods.tradeoff import TradeoffConfig, tradeoff
from .options import build_config, config_options, echo_json


def _fmt(x, spec=".3f") -> str:
    return "-" if x is None else format(x, spec)


@click.command("tradeoff")
@config_options(TradeoffConfig)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="run directory")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def tradeoff_cmd(out, as_json, **kw):
    """PEZ and RLPrompt weight sweeps beside a soft prompt: accuracy vs perplexity / faithfulness, odd prompts."""
    summary = tradeoff(build_config(TradeoffConfig, kw), out)
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


COMMANDS = [tradeoff_cmd]
