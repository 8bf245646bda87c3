"""The `softscope` command line: one subcommand per verb — parse → config dataclass → API call → print.

Options are generated from the config dataclasses, so the CLI and the Python API cannot drift apart.
User-fixable errors print one line and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path

import click

from .errors import SoftscopeError


# ---- options from dataclasses ----------------------------------------------------------------------------
def _click_type(tp):
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        return _click_type(args[0])
    if tp in (int, "int"):
        return int
    if tp in (float, "float"):
        return float
    return str


def _parse_list(value):
    if value is None or isinstance(value, list):
        return value
    return [v.strip() for v in str(value).split(",") if v.strip()]


def config_options(cls, exclude: tuple[str, ...] = ()):
    """Decorator: one click option per dataclass field (help from the field's metadata)."""
    hints = typing.get_type_hints(cls)

    def deco(f):
        for fld in reversed(dataclasses.fields(cls)):
            if fld.name in exclude:
                continue
            tp = hints[fld.name]
            help_ = fld.metadata.get("help", "")
            default = fld.default if fld.default is not dataclasses.MISSING else fld.default_factory()
            flag = "--" + fld.name.replace("_", "-")
            if tp is bool:
                f = click.option(f"{flag}/--no-{fld.name.replace('_', '-')}", fld.name, default=default,
                                 show_default=True, help=help_)(f)
            elif "list" in str(tp):
                f = click.option(flag, fld.name, default=",".join(map(str, default)) if default else None,
                                 show_default=True, help=help_ + " (comma-separated)")(f)
            else:
                f = click.option(flag, fld.name, type=_click_type(tp), default=default, show_default=True,
                                 help=help_)(f)
        return f

    return deco


def build(cls, kwargs: dict):
    """The config from parsed options (lists split on commas); validation errors are SoftscopeErrors."""
    hints = typing.get_type_hints(cls)
    kw = {}
    for fld in dataclasses.fields(cls):
        if fld.name in kwargs:
            v = kwargs[fld.name]
            kw[fld.name] = _parse_list(v) if "list" in str(hints[fld.name]) else v
    return cls(**kw)


def echo_json(obj) -> None:
    from .runs import dumps

    click.echo(dumps(obj))


# ---- commands ---------------------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="softscope")
def cli():
    """softscope: train soft prompts on any Hugging Face causal LM and read what they mean.

    \b
    Typical session:
      softscope train --task sst2 --tokens 7 --steps 300 --out runs/sst2
      softscope project runs/sst2/prompt.safetensors --metric cos
      softscope eval runs/sst2/prompt.safetensors --task sst2
    """


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def models_cmd(as_json):
    """List the packaged offline models (and whether they are installed and cached)."""
    from .models import cache_dir, list_models

    rows = list_models()
    if as_json:
        return echo_json(rows)
    click.echo(f"{'name':<14} {'installed':<10} {'cached':<7} description")
    for r in rows:
        click.echo(f"{r['name']:<14} {str(r['installed']):<10} {str(r['cached']):<7} {r['description']}")
        if not r["installed"]:
            click.echo(f"{'':<14} install: {r['install']}")
    click.echo(f"\nAny Hugging Face causal LM id or local folder works too. Cache: {cache_dir()}")


@cli.command("tasks")
@click.option("--data-dir", default=None, help="data folder (default: $SOFTSCOPE_DATA, then ../shared/data)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def tasks_cmd(data_dir, as_json):
    """List the built-in tasks (classes, label words, template) and where their data is found."""
    from .tasks import data_dir as find_dir
    from .tasks import list_tasks

    rows = list_tasks()
    if as_json:
        return echo_json(rows)
    click.echo(f"data folder: {find_dir(data_dir) or 'none found (Hub will be tried)'}")
    for r in rows:
        click.echo(f"{r['name']:<8} {', '.join(r['classes'])}   template: {r['template']!r}")


def _load_prompt_and_model(prompt_path: str, opts: dict):
    from .models import load_model
    from .prompts import SoftPrompt

    prompt = SoftPrompt.load(prompt_path)
    name = opts.get("model") or (prompt.model if prompt.model else None)
    if not name:
        from .models import DEFAULT_MODEL

        name = DEFAULT_MODEL
    adapter = load_model(name, device=opts.get("device", "auto"), dtype=opts.get("dtype", "auto"),
                         trust_remote_code=opts.get("trust_remote_code", False))
    prompt.check_width(adapter.width, adapter.name)
    return prompt, adapter


@cli.command("train")
@config_options(__import__("softscope.config", fromlist=["TrainConfig"]).TrainConfig)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="run directory to write")
@click.option("--resume", is_flag=True, help="continue a killed run from its last checkpoint (bit-identical result)")
def train_cmd(out, resume, **kw):
    """Train a soft prompt with checkpoints; print accuracy per checkpoint and the final projection."""
    from .config import TrainConfig
    from .demo import show_training
    from .training import load_model_for, train

    cfg = build(TrainConfig, kw)
    if resume:  # the run's own config wins: resuming with other settings would not reproduce it
        from .runs import read_json

        saved = read_json(Path(out) / "config.json")["config"] if (Path(out) / "config.json").exists() else None
        if saved:
            cfg = TrainConfig(**saved)
    adapter = load_model_for(cfg)
    res = train(cfg, out, resume=resume, adapter=adapter)
    show_training(res, adapter, cfg.final_eval)


@cli.command("eval")
@click.argument("prompt_path", type=click.Path())
@config_options(__import__("softscope.config", fromlist=["TaskOptions"]).TaskOptions)
@config_options(__import__("softscope.config", fromlist=["ModelOptions"]).ModelOptions)
@click.option("--out", default=None, help="also write eval_summary.json and eval.jsonl into this folder")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def eval_cmd(prompt_path, out, as_json, **kw):
    """Evaluate a saved prompt (file, run dir or PEFT adapter dir) on a task's test set."""
    from .config import ModelOptions, TaskOptions
    from .runs import write_config, write_json, write_jsonl
    from .training import evaluate, load_task_for

    kw["model"] = kw.get("model") if kw.get("model") != ModelOptions.model else None
    prompt, adapter = _load_prompt_and_model(prompt_path, kw)
    topts = build(TaskOptions, kw)
    task = load_task_for(topts)
    res = evaluate(prompt, topts, adapter=adapter, task=task)
    summary = {"prompt": str(prompt_path), "task": task.name, "model": adapter.name, "accuracy": res["accuracy"],
               "examples": res["examples"], "per_class_recall": res["per_class_recall"]}
    if out:
        write_config(out, "eval", topts, prompt=str(prompt_path), model=adapter.name)
        write_jsonl(Path(out) / "eval.jsonl", [
            {"i": i, "text": e.text, "gold": task.classes[g], "pred": task.classes[p], "logprobs": lp}
            for i, (e, g, p, lp) in enumerate(zip(task.test, res["gold"], res["predictions"], res["logprobs"]))])
        write_json(Path(out) / "eval_summary.json", summary)
    if as_json:
        return echo_json(summary)
    click.echo(f"{task.name}: accuracy {res['accuracy']:.4f} on {res['examples']} test examples")
    for c, r in res["per_class_recall"].items():
        click.echo(f"  recall {c:<14} {r:.3f}" if r is not None else f"  recall {c:<14} n/a")


@cli.command("project")
@click.argument("prompt_path", type=click.Path())
@click.option("--metric", type=click.Choice(["l2", "cos", "dot"]), default="l2", show_default=True,
              help="distance: Euclidean, cosine or raw dot product")
@click.option("--top-k", default=5, show_default=True, help="neighbours per virtual token")
@config_options(__import__("softscope.config", fromlist=["ModelOptions"]).ModelOptions)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def project_cmd(prompt_path, metric, top_k, as_json, **kw):
    """Nearest vocabulary tokens of each virtual token, with distances, and the decoded string."""
    from .config import ModelOptions
    from .projection import project

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


@cli.command("export")
@click.argument("prompt_path", type=click.Path())
@click.option("--peft", "peft_dir", required=True, type=click.Path(file_okay=False), help="write a PEFT adapter folder here")
@click.option("--base-model", default=None, help="base_model_name_or_path to record (default: the prompt's model)")
def export_cmd(prompt_path, peft_dir, base_model):
    """Export a prompt as a PEFT prompt-tuning adapter (adapter_config.json + adapter_model.safetensors)."""
    from .prompts import SoftPrompt, export_peft

    out = export_peft(SoftPrompt.load(prompt_path), peft_dir, base_model)
    click.echo(f"PEFT adapter written to {out}")


def register(command) -> None:
    """Method modules add their subcommands here."""
    cli.add_command(command)


def _load_plugins() -> None:
    import importlib

    for mod in ("describe", "wayward", "pez", "rlprompt", "interpret", "bias", "report"):
        try:
            m = importlib.import_module(f"softscope.cli_{mod}")
        except ModuleNotFoundError as e:
            if e.name == f"softscope.cli_{mod}":
                continue
            raise
        for c in getattr(m, "COMMANDS", []):
            cli.add_command(c)


def main(argv: list[str] | None = None) -> None:
    _load_plugins()
    try:
        cli.main(args=argv, standalone_mode=False)
    except SoftscopeError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted: finished checkpoints are kept; rerun with --resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
