"""The run: every checkpoint × layer pair × target prompt as executor units, the positive control, resume and the summary."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from ...engine.errors import SoftscopeError
from ...engine.executor import PLACEMENT_FIELDS, Unit, WorkerContext
from ...engine.metrics import unexpected_words
from ...engine.models import DEFAULT_MODEL, ModelAdapter, load_model, text_embeddings
from ...engine.patching import layer_pairs
from ...engine.prompts import SoftPrompt
from ...engine.runs import Run, fingerprint, resolve_path
from ...engine.stats import interval_of
from ...engine.sweeps import RowSweep
from ...engine.target_prompts import TargetPrompt, build as build_target
from .config import DescribeConfig, DescribeResult, KIND
from .procedure import _checkpoints, _scoring_target, describe_prompt, score_rows
from .report import _plots
from .scores import PRIMARY_SCORE, SCORES, correlations, mark_copies, summarize_checkpoint


CONTROL = "control"  # its checkpoint name in descriptions.jsonl


@dataclass
class DescribeGrid:
    """What a unit describes a prompt with: the layer pairs and target prompts, the generation settings, and the
    classes and references its descriptions are scored against."""

    pairs: list[tuple[int, int]]
    targets: list[TargetPrompt]
    max_new_tokens: int
    batch_size: int
    source_pass: str
    stop: str
    cut: str
    classes: list[str]
    refs: list[str]


@dataclass
class DescribeJob:
    """What `describe` resolved before opening its run folder: the source and its checkpoints, the model (its
    spec, which a Ray worker loads, and the driver's adapter), the scoring task's name and the grid."""

    cfg: DescribeConfig
    source: Path
    items: list[tuple[str, SoftPrompt]]
    model_spec: str
    adapter: ModelAdapter
    task_name: str
    grid: DescribeGrid
    progress: bool
    t0: float


def _control_text(cfg: DescribeConfig, refs: list[str]) -> str:
    """The control's true task description: --control-text, else the task's first reference description."""
    return cfg.control_text or refs[0]


def _control_unit(adapter: ModelAdapter, cfg: DescribeConfig, grid: DescribeGrid) -> Unit:
    """The control as one more unit (it runs where the checkpoints run): the same grid and target-prompt seeds on
    P = e(true task description) at its own length. If this prompt does not get its classes named, no trained
    prompt can be expected to. Scored against the references other than the control text itself, so its ROUGE
    and similarity are not a copy's."""
    refs = grid.refs
    text = _control_text(cfg, refs)
    _, P = text_embeddings(adapter, text)
    targets = [build_target(adapter, cfg.target_prompt, P.shape[0], cfg.seed + i, cfg.demos)
               for i in range(cfg.n_targets)]
    own = dataclasses.replace(grid, targets=targets, refs=[r for r in refs if r != text] or refs)
    return Unit(CONTROL, {"prompt": P, "placement": "after_bos", "grid": own})


def _control_summary(cfg: DescribeConfig, adapter: ModelAdapter, rows: list[dict], refs: list[str]) -> dict:
    """The control's text, its length in tokens and its rows summarised like a checkpoint's."""
    text = _control_text(cfg, refs)
    done = [r for r in rows if r["checkpoint"] == CONTROL]
    return {"text": text, "tokens": len(adapter.encode(text)),
            **summarize_checkpoint(done, cfg.top_k, not cfg.keep_copies)}


def describe_setup(model: str, device: str, dtype: str, trust_remote_code: bool) -> WorkerContext:
    """A Ray worker's context: the model alone (a unit carries its prompt and grid)."""
    return WorkerContext(load_model(model, device, dtype, trust_remote_code), None)


def describe_unit(ctx: WorkerContext, unit: Unit) -> list[dict]:
    """One checkpoint of a describe sweep (runs here or on a Ray worker): its scored descriptions over the grid, each
    flagged when it copies a demonstration of its target prompt (mark_copies)."""
    a, g = unit.args, unit.args["grid"]
    rows = describe_prompt(ctx.adapter, a["prompt"], g.pairs, g.targets, g.max_new_tokens, g.batch_size,
                           g.source_pass, g.stop, g.cut, a["placement"])
    score_rows(rows, g.classes, g.refs)
    mark_copies(rows, g.targets)
    return rows


# ---- the method --------------------------------------------------------------------------------------------
def default_describe_out(source: str | Path) -> Path:
    """Where results go by default: RUN_DIR/describe, or <prompt file stem>-describe beside a file."""
    p = Path(source)
    if p.is_dir() and not (p / "adapter_model.safetensors").exists():
        return p / "describe"
    return p.with_name(p.stem + "-describe") if p.is_file() else p.with_name(p.name + "-describe")


def describe(source: str | Path, cfg: DescribeConfig | None = None, out: str | Path | None = None,
             adapter: ModelAdapter | None = None, progress: bool = True, command: str = "describe") -> DescribeResult:
    """Describe every checkpoint of `source`; writes descriptions.jsonl, describe_summary.json and PNGs to `out`.

    Interrupted runs resume: checkpoints already in descriptions.jsonl (same config) are not redone.
    """
    t0 = time.time()
    cfg = cfg or DescribeConfig()
    source = Path(source)
    if not source.exists():
        raise SoftscopeError(f"{source} does not exist: pass a run dir, a prompt file or a PEFT adapter dir")
    out = Path(out) if out else default_describe_out(source)
    items = _checkpoints(source, cfg.checkpoints)
    first = items[-1][1]
    model_spec = cfg.model or first.model or DEFAULT_MODEL  # what a Ray worker loads for itself
    if adapter is None:
        adapter = load_model(model_spec, device=cfg.device, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code)
    for _, p in items:
        p.check_width(adapter.width, adapter.name)
    task_name, classes, refs = _scoring_target(first, cfg)
    pairs = layer_pairs(cfg.layers, adapter.n_layers)
    n = first.n_tokens
    targets = [build_target(adapter, cfg.target_prompt, n, cfg.seed + i, cfg.demos) for i in range(cfg.n_targets)]
    grid = DescribeGrid(pairs, targets, cfg.max_new_tokens, cfg.batch_size, cfg.source_pass, cfg.stop, cfg.cut,
                        classes, refs)

    with Run.open(out, KIND, fingerprint(cfg, source=str(source)), growable=PLACEMENT_FIELDS,
                  command=command) as run:  # where the units run is not a setting of the results
        return _describe(run, DescribeJob(cfg, source, items, model_spec, adapter, task_name, grid, progress, t0))


def _describe(run: Run, job: DescribeJob) -> DescribeResult:
    out, cfg, source, items, adapter, t0 = run.path, job.cfg, job.source, job.items, job.adapter, job.t0
    grid = job.grid
    task_name, classes, refs, pairs, targets = job.task_name, grid.classes, grid.refs, grid.pairs, grid.targets
    if not run.existing:
        run.write_config(cfg, source=str(source), model=adapter.name, task=task_name, classes=classes,
                         references=refs, pairs=pairs, target_prompts=[t.to_dict() for t in targets])
    meta = {name: (p.step, p.accuracy) for name, p in items}
    meta[CONTROL] = (None, None)

    def rows_of(unit: Unit, new: list[dict]) -> tuple[list[dict], None]:  # a finished checkpoint's rows, together
        step, acc = meta[unit.key]
        return [{"checkpoint": unit.key, "step": step, "accuracy": acc, **r} for r in new], None

    sweep = RowSweep(run, "descriptions.jsonl", lambda r: r["checkpoint"], rows_of)
    full = len(pairs) * len(targets)
    sweep.drop_partial(lambda ck: len(ck) == full)  # a checkpoint cut short is described again
    done = sweep.done
    sweep.units = [Unit(name, {"prompt": p.tensor, "placement": p.placement, "grid": grid}) for name, p in items
                   if name not in done]
    if cfg.control and CONTROL not in done:
        sweep.units.append(_control_unit(adapter, cfg, grid))

    worker_model = resolve_path("model", job.model_spec)  # a local folder as an absolute path: workers run elsewhere
    sweep.execute(describe_unit, WorkerContext(adapter, None, progress=job.progress), setup=describe_setup,
                  setup_args=(worker_model, cfg.device, cfg.dtype, cfg.trust_remote_code), options=cfg,
                  progress=job.progress)
    rows = sweep.rows
    control = _control_summary(cfg, adapter, rows, refs) if cfg.control else None

    keep = [name for name, _ in items]
    rows = [r for r in rows if r["checkpoint"] in keep]
    mark_copies([r for r in rows if "copies_demo" not in r], targets)  # rows written before copies were marked
    cks = []
    for name, p in items:
        ck_rows = [r for r in rows if r["checkpoint"] == name]
        n_eval = (p.extra or {}).get("eval_examples")
        cks.append({"checkpoint": name, "step": p.step, "accuracy": p.accuracy, "accuracy_examples": n_eval,
                    "accuracy_ci95": interval_of(p.accuracy, n_eval) if p.accuracy is not None and n_eval else None,
                    **summarize_checkpoint(ck_rows, cfg.top_k, not cfg.keep_copies)})
        if cfg.elaborated:  # what a developer reads to find a bias nobody planted (metrics.unexpected_words)

            cks[-1]["unexpected_words"] = unexpected_words([r["cut"] for r in ck_rows], classes, refs,
                                                           " ".join(t.text for t in targets))
    summary = {"task": task_name, "model": adapter.name, "source": str(source), "classes": classes,
               "layers": cfg.layers, "pairs": len(pairs), "target_prompts": len(targets),
               "max_new_tokens": cfg.max_new_tokens, "checkpoints": cks, "primary_score": PRIMARY_SCORE,
               "secondary_scores": [k for k in SCORES if k != PRIMARY_SCORE],
               "correlation": correlations(cks) if len(cks) >= 3 else {},
               "source_pass": cfg.source_pass, "stop": cfg.stop, "cut": cfg.cut, "protocol": cfg.protocol,
               "seconds": time.time() - t0}
    if control is not None:
        summary["control"] = control
    run.write_json("describe_summary.json", summary)
    plots = _plots(out, rows, summary)
    return DescribeResult(out_dir=out, rows=rows, summary=summary, seconds=time.time() - t0, plots=plots)
