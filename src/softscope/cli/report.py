"""`softscope report` (one self-contained HTML page for a run dir) and `softscope explain` (one prompt, three readings)."""

from __future__ import annotations

import click

from ..methods.explain import ExplainConfig, explain, explain_table, prompt_and_run
from ..report.html import build_report, report_sections
from .options import build_config, config_options, echo_json


@click.command("report")
@click.argument("run_dir", type=click.Path())
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="HTML file to write (default: RUN_DIR/report.html)")
def report_cmd(run_dir, out):
    """Write one self-contained HTML report (plots embedded, no network needed) of any softscope run dir.

    Sections appear for what the folder holds: training curves, InSPEcT descriptions and the layer-grid heatmap
    (hover a cell for its text), explain readings, bias, waywardness, PEZ/RLPrompt trade-offs, other plots.
    """
    path = build_report(run_dir, out)
    click.echo(f"{path} ({path.stat().st_size / 1024:.0f} KB): sections {', '.join(report_sections(path))}")


@click.command("explain")
@click.argument("prompt_path", type=click.Path())
@config_options(ExplainConfig)
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="output folder (default: RUN_DIR/explain, or <prompt>-explain beside a prompt file)")
@click.option("--report/--no-report", "with_report", default=True, show_default=True,
              help="rewrite the run's report.html afterwards (when the prompt belongs to a run dir)")
@click.option("--json", "as_json", is_flag=True, help="print explain_summary.json instead of a table")
def explain_cmd(prompt_path, out, with_report, as_json, **kw):
    """Read one soft prompt three ways, side by side: nearest-token projection, best InSPEcT description, PEZ.

    Each reading is used as a prompt on held-out test inputs: faithfulness (agreement with the soft prompt,
    accuracy, gap, KL) and scrutability (perplexity, dictionary words). PROMPT_PATH is a prompt file, a training
    run dir (its final prompt) or a PEFT adapter dir.
    """
    cfg = build_config(ExplainConfig, kw)
    res = explain(prompt_path, cfg, out=out)
    if as_json:
        return echo_json(res.summary)
    click.echo(explain_table(res.summary))
    click.echo(f"written to {res.out_dir} ({res.summary['seconds']:.0f} s): readings.jsonl, explain_summary.json")
    _, run = prompt_and_run(prompt_path)
    if with_report and run is not None:
        click.echo(f"report: {build_report(run)}")


COMMANDS = [report_cmd, explain_cmd]
