"""The sweep: one executor unit per target × seed (all γ of a target trained at once), early stopping, resume."""

from __future__ import annotations

import copy
import dataclasses
import random
import re
import time
from pathlib import Path

import torch

from ...engine.carry import record as record_settings
from ...engine.config import TrainConfig, subconfig
from ...engine.errors import SoftscopeError
from ...engine.executor import PLACEMENT_FIELDS, Unit, WorkerContext
from ...engine.models import ModelAdapter, choose_autocast, load_model_for
from ...engine.prompts import SoftPrompt
from ...engine.runs import Run, fingerprint, read_jsonl
from ...engine.scoring import Scorer
from ...engine.sweeps import RowSweep
from ...engine.tasks import BUILTIN, WAYWARD_TEMPLATES, load_task
from ...engine.training import KIND as TRAIN, init_prompt, tensor_digest, train, train_many
from .config import KIND, WaywardConfig
from .objective import distance_term, embedding_mean_sq_norm, reading, safe_name, target_embeddings
from .report import plot_wayward, summarize_wayward
from .targets import load_targets


# ---- the sweep ---------------------------------------------------------------------------------------------
def _task_for(cfg: WaywardConfig):
    key = re.sub(r"[-_ ]", "", cfg.task.strip().lower())
    template = WAYWARD_TEMPLATES.get(key) if cfg.template == "wayward" and key in BUILTIN else None
    return load_task(cfg.task, data_dir=cfg.data_dir, text_column=cfg.text_column, label_column=cfg.label_column,
                     label_words=cfg.label_words, template=template, max_train=cfg.max_train,
                     max_test=cfg.max_test, seed=cfg.seed)


def _wayward_train_cfg(cfg: WaywardConfig, n: int, seed: int) -> TrainConfig:
    # train() evaluates at step 0 and at the end on `eval_examples`: keep that tiny, we evaluate once ourselves
    return subconfig(TrainConfig, cfg, tokens=n, final_eval="none", template=None, eval_examples=8,
                     checkpoint_every=max(cfg.steps, 1), seed=seed)


def _start(cfg: WaywardConfig, adapter: ModelAdapter, n: int, e_t: torch.Tensor, gamma: float,
           seed: int) -> torch.Tensor:
    """Initial prompt for one γ: e(t) itself, or --init drawn from a generator seeded by the train seed (same for
    all γ of that seed)."""
    if cfg.start == "target" or (cfg.start == "mixed" and gamma > 0):
        return e_t.detach().float().cpu().clone()
    return init_prompt(adapter, n, cfg.init, torch.Generator().manual_seed(seed), cfg.init_text)


def dev_split(task, n: int, seed: int):
    """(task to train on, dev examples): the task's dev split when it has one (seeded subset of n), else n examples
    held out of train (seeded) and removed from the returned task's train split, so early stopping never sees
    a training example or a test example."""
    if task.dev:
        return task, task.subset("dev", n, seed)
    if len(task.train) < 2 * n:
        raise SoftscopeError(f"{task.name} has no dev split and only {len(task.train)} training examples to hold "
                             f"{n} out of: lower --dev-examples")
    order = list(range(len(task.train)))
    random.Random(seed).shuffle(order)
    held = set(order[:n])
    dev = [ex for i, ex in enumerate(task.train) if i in held]
    return dataclasses.replace(task, train=[ex for i, ex in enumerate(task.train) if i not in held]), dev


class EarlyStop:
    """Per-prompt early stopping for training.train_many: every `every` steps (and at step 0) score each prompt
    still running on dev; keep its best prompt (strictly better accuracy; ties keep the earlier); a prompt stops
    after `patience` evaluations without improvement, training ends when all have stopped. Stopped prompts keep
    training in the batch (their best snapshot is frozen): per-prompt clipping and AdamW keep them independent."""

    def __init__(self, score, k: int, every: int, patience: int):
        self.score, self.every, self.patience = score, every, patience
        self.best = [None] * k
        self.best_acc = [-1.0] * k
        self.best_step = [0] * k
        self.stopped_at: list[int | None] = [None] * k
        self.history: list[list[tuple[int, float]]] = [[] for _ in range(k)]
        self._bad = [0] * k

    def __call__(self, step: int, P: torch.Tensor) -> bool:
        if step % self.every:
            return False
        for k, p in enumerate(P):
            if self.stopped_at[k] is not None:
                continue
            acc = self.score(p)
            self.history[k].append((step, acc))
            if acc > self.best_acc[k]:
                self.best[k], self.best_acc[k], self.best_step[k], self._bad[k] = p.detach().clone(), acc, step, 0
            else:
                self._bad[k] += 1
                if self._bad[k] >= self.patience:
                    self.stopped_at[k] = step
        return all(s is not None for s in self.stopped_at)


@dataclasses.dataclass
class WaywardContext(WorkerContext):
    """What every unit of a sweep shares: the model, the task and its splits, the scorer, the distance scale, the
    config (a worker's: `context_config`) and, on the driver, the run folder (for --no-batched training folders)."""

    train_task: object
    dev: list
    test: list
    scorer: Scorer
    scale: float
    cfg: WaywardConfig
    run_path: Path | None = None


# Sweep-level fields: which units a sweep has and how its summary reads them. A unit never reads them (its target,
# γ and seed come in the unit), so a worker's context is keyed on the config without them: one context (model,
# task, dev split, scorer) serves every sweep with the same model, data and training settings.
SWEEP_ONLY = ("targets", "target", "gamma", "max_targets", "train_seeds", "f1_threshold", "within", "selection",
              "baseline_min", "bootstrap", "protocol", *PLACEMENT_FIELDS)


def context_config(cfg: WaywardConfig) -> WaywardConfig:
    """`cfg` with its SWEEP_ONLY fields at their defaults (a copy; no preset re-applied): what a worker's context
    depends on, so consecutive sweeps on one Ray cluster reuse the workers' loaded contexts."""
    c = copy.copy(cfg)  # not dataclasses.replace: __post_init__ would re-apply a preset or refuse its targets
    for f in dataclasses.fields(WaywardConfig):
        if f.name in SWEEP_ONLY:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            setattr(c, f.name, default)
    return c


def wayward_setup(cfg: WaywardConfig) -> WaywardContext:
    """Build a unit context from the config alone (what a Ray worker does once, then keeps)."""
    adapter = load_model_for(cfg)
    task = _task_for(cfg)
    train_task, dev = dev_split(task, cfg.dev_examples, cfg.seed) if cfg.patience else (task, [])
    scorer = Scorer(adapter, task, max_length=cfg.max_length, verbalizer=cfg.verbalizer, autocast_bf16=cfg.eval_bf16)
    scale = embedding_mean_sq_norm(adapter) if cfg.distance_norm == "embedding" else 1.0
    return WaywardContext(adapter, task, train_task, dev, task.subset("test", cfg.test_examples or None, cfg.seed),
                          scorer, scale, cfg)


def wayward_unit(ctx: WaywardContext, unit: Unit) -> list[tuple[dict, torch.Tensor]]:
    """One target × train seed, every γ of it trained together: [(row, prompt)] for the driver to save.

    Depends only on the unit's key and the config (seeded generators), so local and Ray runs give the same rows.
    """
    c, cfg, run = ctx, ctx.cfg, ctx.run_path
    adapter, task, scorer, test, scale = c.adapter, c.task, c.scorer, c.test, c.scale
    name, text, seed, todo = unit.args["target"], unit.args["text"], unit.args["seed"], unit.args["gammas"]
    ids, e_t = target_embeddings(adapter, text)
    n = len(ids)
    start_acc = scorer.accuracy(e_t, test, cfg.eval_batch_size)  # e(t) itself, untrained: is t already a prompt?
    tcfg = _wayward_train_cfg(cfg, n, seed)
    starts = torch.stack([_start(cfg, adapter, n, e_t, g, seed) for g in todo])
    term = distance_term(todo, e_t, scale)
    ts = time.time()
    stop = None
    if cfg.patience:
        stop = EarlyStop(lambda p: scorer.accuracy(p, c.dev, cfg.eval_batch_size), len(todo), cfg.eval_every,
                         cfg.patience)
        _, metrics = train_many(tcfg, starts, adapter=adapter, task=c.train_task, loss_terms=[term],
                                progress=False, on_step=stop)
        finals = [(g, stop.best[k], metrics[-1]["loss"][k] if metrics else None) for k, g in enumerate(todo)]
    elif cfg.batched and (len(todo) > 1 or not ctx.in_place):  # on a worker (no run folder) one γ is K = 1
        Ps, metrics = train_many(tcfg, starts, adapter=adapter, task=task, loss_terms=[term], progress=False)
        finals = [(g, Ps[k], metrics[-1]["loss"][k] if metrics else None) for k, g in enumerate(todo)]
    else:  # local only: resumable per-γ training folders inside the run, each fingerprinted by its whole sweep
        finals = []
        sweep = {k: v for k, v in fingerprint(cfg)["config"].items() if k not in GROWABLE}
        for k, g in enumerate(todo):
            rdir = run / "runs" / safe_name(name) / (f"gamma-{g:g}" + (f"-seed-{seed}" if cfg.train_seeds else ""))
            sub = fingerprint(tcfg, sweep=sweep, target=text, gamma=g, init_prompt=tensor_digest(starts[k]))
            with Run.open(rdir, TRAIN, sub, command="wayward") as r:  # a killed sweep resumes it
                res = train(tcfg, r, adapter=adapter, task=task, loss_terms=[distance_term(g, e_t, scale)],
                            init=starts[k], progress=False)
            last = [m for m in read_jsonl(rdir / "metrics.jsonl") if m["event"] == "train"]
            finals.append((g, res.prompt.tensor, last[-1]["loss"] if last else None))
    train_seconds = (time.time() - ts) / len(todo)
    out = []
    for k, (g, P, final_loss) in enumerate(finals):
        te = time.time()
        correct = scorer.correct(P, test, cfg.eval_batch_size)
        rd = reading(adapter, P.to(adapter.device), text, ids)
        row = {"target": name, "target_text": text, "n_tokens": n, "gamma": g, "seed": seed,
               "accuracy": float(correct.float().mean()), **rd, "distance_scaled": rd["distance"] / scale,
               "start_accuracy": start_acc, "final_task_loss": final_loss, "test_examples": len(test),
               "steps": stop.best_step[k] if stop else cfg.steps,
               "correct": "".join("1" if x else "0" for x in correct.tolist()), "model": adapter.name,
               "task": task.name, "seconds": train_seconds + time.time() - te}
        if stop:
            row.update(dev_accuracy=stop.best_acc[k], stopped_at=stop.stopped_at[k],
                       dev_history=stop.history[k], dev_examples=len(c.dev))
        out.append((row, P.detach().float().cpu()))
    return out


def run_wayward(cfg: WaywardConfig, out: str | Path, *, resume: bool = False, adapter: ModelAdapter | None = None,
                task=None, progress: bool = True) -> dict:
    """Run (or continue) a sweep into `out`; returns the summary (also written as wayward_summary.json)."""
    with Run.open(out, KIND, fingerprint(cfg), resume=resume, growable=GROWABLE) as run:
        return _run_sweep(cfg, run, adapter, task, progress)


GROWABLE = ("max_targets", *PLACEMENT_FIELDS)  # a resumed sweep may extend its targets or run elsewhere


def _run_sweep(cfg: WaywardConfig, run: Run, adapter, task, progress: bool) -> dict:
    t0 = time.time()
    adapter = adapter or load_model_for(cfg)
    task = task or _task_for(cfg)
    targets = load_targets(cfg, task.name)
    test = task.subset("test", cfg.test_examples or None, cfg.seed)
    train_task, dev = dev_split(task, cfg.dev_examples, cfg.seed) if cfg.patience else (task, [])
    scorer = Scorer(adapter, task, max_length=cfg.max_length, verbalizer=cfg.verbalizer, autocast_bf16=cfg.eval_bf16)

    settings = record_settings(task, adapter, scorer, task_spec=task.origin, data_dir=cfg.data_dir, seed=cfg.seed,
                               max_train=cfg.max_train, max_test=cfg.max_test,
                               test_examples=len(test) if len(test) < len(task.test) else None)
    mean_sq = embedding_mean_sq_norm(adapter)
    scale = mean_sq if cfg.distance_norm == "embedding" else 1.0
    run.write_config(cfg, task=task.to_dict(),
                     compute=choose_autocast(cfg.bf16_autocast, adapter.device, announce=progress)[1],
                     targets=dict(targets), test_subset_size=len(test), dev_size=len(dev),
                     model_info={"name": adapter.name, "layers": adapter.n_layers, "width": adapter.width,
                                 "embedding_mean_sq_norm": mean_sq})

    def rows_of(unit: Unit, result: list[tuple[dict, torch.Tensor]]) -> tuple[list[dict], None]:
        new = []
        for row, P in result:  # only the driver writes the run folder
            sp = SoftPrompt(tensor=P.float().cpu(), model=adapter.name, task=task.name, template=task.template,
                            label_words=list(task.label_words), classes=list(task.classes), step=row["steps"],
                            accuracy=row["accuracy"], extra={"target": row["target"], "target_text": row["target_text"],
                                                             "gamma": row["gamma"], "seed": row["seed"]},
                            settings=settings)
            tag = f"{safe_name(row['target'])}__gamma-{row['gamma']:g}" + (f"__seed-{row['seed']}" if cfg.train_seeds else "")
            path = sp.save(run.file(f"prompts/{tag}.safetensors"))
            new.append({**row, "prompt": str(path.relative_to(run.path))})
        return new, None  # a unit's rows (all its γ) land together

    # one row per target × γ × seed; a unit is a target × seed with the γ it still lacks
    sweep = RowSweep(run, "wayward.jsonl", lambda r: (r["target"], r["gamma"], r.get("seed", cfg.seed)), rows_of)
    done = sweep.done
    for name, text in targets:
        for seed in cfg.seeds:
            todo = [g for g in cfg.gamma if (name, g, seed) not in done]
            if todo:
                sweep.units.append(Unit(f"{name}|seed={seed}", {"target": name, "text": text, "seed": seed,
                                                                "gammas": todo}))
    if cfg.executor != "local" and not cfg.batched:
        raise SoftscopeError("--no-batched keeps per-γ training folders and runs with --executor local only")
    ctx = WaywardContext(adapter, task, train_task, dev, test, scorer, scale, cfg, run.path, progress=progress)
    sweep.execute(wayward_unit, ctx, setup=wayward_setup, setup_args=(context_config(cfg),), options=cfg,
                  progress=progress)
    rows = run.read_jsonl("wayward.jsonl")
    summary = summarize_wayward(rows, cfg.f1_threshold, cfg.within, cfg.selection, cfg.bootstrap, cfg.baseline_min)
    summary.update(model=adapter.name, task=task.name, protocol=cfg.protocol, steps=cfg.steps, lr=cfg.lr,
                   gamma=cfg.gamma, train_seeds=cfg.seeds, test_examples=len(test), dev_examples=len(dev),
                   batched=cfg.batched, distance_norm=cfg.distance_norm, embedding_mean_sq_norm=mean_sq,
                   compute_seconds=sum(r.get("seconds", 0.0) for r in rows),
                   wall_seconds_this_call=time.time() - t0)
    run.write_json("wayward_summary.json", summary)
    plot_wayward(rows, run.path, cfg.f1_threshold, title=f"{adapter.name} · {task.name}")
    return summary
