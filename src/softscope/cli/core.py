"""Core commands: models, tasks, train, eval, project, export."""

from __future__ import annotations

from pathlib import Path

import click

from .options import build, config_options, echo_json


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def models_cmd(as_json):
    """List the packaged offline models (and whether they are installed and cached)."""
    from ..engine.models import cache_dir, list_models

    rows = list_models()
    if as_json:
        return echo_json(rows)
    click.echo(f"{'name':<14} {'installed':<10} {'cached':<7} description")
    for r in rows:
        click.echo(f"{r['name']:<14} {str(r['installed']):<10} {str(r['cached']):<7} {r['description']}")
        if not r["installed"]:
            click.echo(f"{'':<14} install: {r['install']}")
    click.echo(f"\nAny Hugging Face causal LM id or local folder works too. Cache: {cache_dir()}")


@click.command("tasks")
@click.option("--data-dir", default=None, help="data folder (default: $SOFTSCOPE_DATA, then ../shared/data)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def tasks_cmd(data_dir, as_json):
    """List the built-in tasks (classes, label words, template) and where their data is found."""
    from ..engine.tasks import data_dir as find_dir
    from ..engine.tasks import list_tasks

    rows = list_tasks()
    if as_json:
        return echo_json(rows)
    click.echo(f"data folder: {find_dir(data_dir) or 'none found (Hub will be tried)'}")
    for r in rows:
        click.echo(f"{r['name']:<8} {', '.join(r['classes'])}   template: {r['template']!r}")


def _load_prompt_and_model(prompt_path: str, opts: dict):
    from ..engine.models import load_model
    from ..engine.prompts import SoftPrompt

    prompt = SoftPrompt.load(prompt_path)
    name = opts.get("model") or (prompt.model if prompt.model else None)
    if not name:
        from ..engine.models import DEFAULT_MODEL

        name = DEFAULT_MODEL
    adapter = load_model(name, device=opts.get("device", "auto"), dtype=opts.get("dtype", "auto"),
                         trust_remote_code=opts.get("trust_remote_code", False))
    prompt.check_width(adapter.width, adapter.name)
    return prompt, adapter


@click.command("train")
@config_options(__import__("softscope.engine.config", fromlist=["TrainConfig"]).TrainConfig)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="run directory to write")
@click.option("--resume", is_flag=True, help="continue a killed run from its last checkpoint (bit-identical result)")
def train_cmd(out, resume, **kw):
    """Train a soft prompt with checkpoints; print accuracy per checkpoint and the final projection."""
    from ..engine.config import TrainConfig
    from .demo import show_training
    from ..engine.training import load_model_for, train

    cfg = build(TrainConfig, kw)
    if resume:  # the run's own config wins: resuming with other settings would not reproduce it
        from ..engine.runs import read_json

        saved = read_json(Path(out) / "config.json")["config"] if (Path(out) / "config.json").exists() else None
        if saved:
            cfg = TrainConfig(**saved)
    adapter = load_model_for(cfg)
    res = train(cfg, out, resume=resume, adapter=adapter)
    show_training(res, adapter, cfg.final_eval)


@click.command("eval")
@click.argument("prompt_path", type=click.Path())
@config_options(__import__("softscope.engine.config", fromlist=["TaskOptions"]).TaskOptions)
@config_options(__import__("softscope.engine.config", fromlist=["ModelOptions"]).ModelOptions)
@click.option("--out", default=None, help="also write eval_summary.json and eval.jsonl into this folder")
@click.option("--allow-other-task", is_flag=True,
              help="score the prompt even on a task whose classes or label words differ from its own")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def eval_cmd(prompt_path, out, allow_other_task, as_json, **kw):
    """Evaluate a saved prompt (file, run dir or PEFT adapter dir) on a task's test set."""
    from ..engine.config import ModelOptions, TaskOptions
    from ..engine.runs import write_config, write_json, write_jsonl
    from ..engine.stats import fmt_ci
    from ..engine.training import evaluate, load_task_for

    kw["model"] = kw.get("model") if kw.get("model") != ModelOptions.model else None
    prompt, adapter = _load_prompt_and_model(prompt_path, kw)
    topts = build(TaskOptions, kw)
    task = load_task_for(topts)
    res = evaluate(prompt, topts, adapter=adapter, task=task, allow_other_task=allow_other_task)
    summary = {"prompt": str(prompt_path), "task": task.name, "model": adapter.name, "accuracy": res["accuracy"],
               "examples": res["examples"], "ci95": res["ci95"], "interval": "wilson",
               "per_class_recall": res["per_class_recall"]}
    if out:
        write_config(out, "eval", topts, prompt=str(prompt_path), model=adapter.name)
        write_jsonl(Path(out) / "eval.jsonl", [
            {"i": i, "text": e.text, "gold": task.classes[g], "pred": task.classes[p], "logprobs": lp}
            for i, (e, g, p, lp) in enumerate(zip(task.test, res["gold"], res["predictions"], res["logprobs"]))])
        write_json(Path(out) / "eval_summary.json", summary)
    if as_json:
        return echo_json(summary)
    click.echo(f"{task.name}: accuracy {fmt_ci(res['accuracy'], res['ci95'], 4)} on {res['examples']} test examples"
               " (95% Wilson interval)")
    for c, r in res["per_class_recall"].items():
        click.echo(f"  recall {c:<14} {r:.3f}" if r is not None else f"  recall {c:<14} n/a")


@click.command("project")
@click.argument("prompt_path", type=click.Path())
@click.option("--metric", type=click.Choice(["l2", "cos", "dot"]), default="l2", show_default=True,
              help="distance: Euclidean, cosine or raw dot product")
@click.option("--top-k", default=5, show_default=True, help="neighbours per virtual token")
@config_options(__import__("softscope.engine.config", fromlist=["ModelOptions"]).ModelOptions)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def project_cmd(prompt_path, metric, top_k, as_json, **kw):
    """Nearest vocabulary tokens of each virtual token, with distances, and the decoded string."""
    from ..engine.config import ModelOptions
    from ..engine.projection import check_options, project

    check_options(metric, top_k)
    kw["model"] = kw.get("model") if kw.get("model") != ModelOptions.model else None
    prompt, adapter = _load_prompt_and_model(prompt_path, kw)
    proj = project(adapter, prompt.tensor, metric, top_k)
    if as_json:
        return echo_json({"prompt": str(prompt_path), "model": adapter.name, **proj.to_dict()})
    click.echo(f"{prompt.n_tokens} virtual tokens, {adapter.name}, metric {metric}"
               + ("  (output embeddings untied: input-embedding neighbours)" if proj.untied_output else ""))
    for i, top in enumerate(proj.top):
        click.echo(f"  p{i}: " + "  ".join(f"{t['token']!r} ({t['score']:.3f})" for t in top))
    click.echo(f"decoded: {proj.text!r}")


@click.command("export")
@click.argument("prompt_path", type=click.Path())
@click.option("--peft", "peft_dir", required=True, type=click.Path(file_okay=False), help="write a PEFT adapter folder here")
@click.option("--base-model", default=None, help="base_model_name_or_path to record (default: the prompt's model)")
def export_cmd(prompt_path, peft_dir, base_model):
    """Export a prompt as a PEFT prompt-tuning adapter (adapter_config.json + adapter_model.safetensors)."""
    from ..engine.prompts import SoftPrompt, export_peft

    out = export_peft(SoftPrompt.load(prompt_path), peft_dir, base_model)
    click.echo(f"PEFT adapter written to {out}")


COMMANDS = [models_cmd, tasks_cmd, train_cmd, eval_cmd, project_cmd, export_cmd]
