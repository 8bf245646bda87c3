"""PEZ: hard prompts by projected gradient descent, with an optional fluency objective.

Wen et al. 2023, "Hard Prompts Made Easy: Gradient-Based Discrete Optimization for Prompt Tuning and Discovery";
the fluency objective follows Patel et al. 2025, "Towards Interpretable Soft Prompts" (docs/methods.md §6).

Each step keeps a continuous prompt P, projects every virtual token to its nearest vocabulary embedding by
cosine (P'), runs the forward and the loss with P', and applies the gradient taken at P' to P (straight
through). The hard prompt is the projection. Settings: 10 tokens, init from the class-label tokens, AdamW
lr 0.3, batch 16, the checkpoint with the best *held-out* accuracy is selected (dev split, or a seeded cut of
train when the task has none: the test set is never used for selection).

Fluency: L = w · NLL_LM(P') + (1 − w) · L_task, where NLL_LM is the mean next-token NLL of the projected
tokens read as text after the document start. It is differentiable through the straight-through projection on
both sides: the projected embeddings are the LM's inputs, and (tied embeddings) the target logit of token t_i
is h_{i-1} · P'_i, so the gradient also says which token would be likelier. The training loop adds loss terms
to the task loss, so we minimise L / (1 − w) = L_task + w/(1 − w) · NLL: AdamW is invariant to a constant loss
scale, and PEZ runs without gradient clipping, so the steps are those of L itself (hence w < 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..engine.carry import record
from ..engine.config import LR, TrainConfig, option, subconfig
from ..engine.errors import SoftscopeError
from ..engine.executor import PLACEMENT_FIELDS, ExecutorOptions, Unit, sub_run
from ..engine.metrics import perplexity
from ..engine.models import ModelAdapter, load_model_for, special_ids, token_embeddings
from ..engine.projection import hard_ids, project_straight_through
from ..engine.prompts import SoftPrompt
from ..engine.runs import Run, fingerprint, read_json, register_kind
from ..engine.scoring import Scorer, prompt_nll
from ..engine.sweeps import SweepContext, WeightSweep, plan_weights, plot_curves, sweep_settings, sweep_setup
from ..engine.tasks import holdout_task, load_task_for
from ..engine.training import KIND as TRAIN, LossTerm, init_prompt, tensor_digest, train

KIND = register_kind("pez")


@dataclass
class PezConfig(TrainConfig, ExecutorOptions):
    """PEZ hard-prompt search: one run per fluency weight (one executor unit each), selected by held-out accuracy."""

    tokens: int = option(10, "hard prompt length (tokens)", ge=1)
    steps: int = option(100, "optimizer steps per weight", ge=0)
    batch_size: int = option(16, "examples per step", ge=1)
    lr: float = option(0.3, "AdamW learning rate on the continuous prompt (PEZ: ~0.1-0.3)", **LR)
    grad_clip: float = option(0.0, "clip the gradient norm (0 = off, as PEZ)", ge=0)
    init: str = option("labels", "labels (class-label tokens, PEZ), vocab, random or text",
                       choices=("labels", "vocab", "random", "text"))
    checkpoint_every: int = option(10, "evaluate the hard prompt on the held-out set every this many steps", ge=1)
    eval_examples: int = option(200, "held-out examples for checkpoint selection (0 = all)", ge=0)
    fluency_weight: list[float] = option([0.0], "fluency weights w in L = w*NLL_LM + (1-w)*L_task, one run each (0 <= w < 1)",
                                    ge=0, lt=1, why="w = 1 would ignore the task")
    holdout: int = option(300, "held-out examples cut from train when the task has no dev split", ge=1)
    test_examples: int = option(0, "test examples for the selected prompt (0 = the whole test set, -1 = skip)", ge=-1)

    def __post_init__(self) -> None:
        self.fluency_weight = [float(w) for w in (self.fluency_weight or [0.0])]
        super().__post_init__()
        ExecutorOptions.__post_init__(self)


# ---- the projection and the fluency term ----------------------------------------------------------------
def pez_transform(adapter: ModelAdapter):
    """P ↦ nearest non-special token embeddings by cosine, straight-through (what the model sees at every step)."""
    E, skip = token_embeddings(adapter).detach(), special_ids(adapter)
    return lambda P: project_straight_through(P, E, "cos", skip)


def fluency_term(adapter: ModelAdapter, weight: float) -> LossTerm:
    """The LossTerm w/(1−w) · NLL_LM(P'), computed on the projection of the trained parameters."""
    transform = pez_transform(adapter)
    scale = weight / (1.0 - weight)

    def fn(P: torch.Tensor) -> torch.Tensor:
        seen = transform(P)
        return scale * prompt_nll(adapter, seen, hard_ids(adapter, P))

    return LossTerm("fluency", fn)


def label_init(adapter: ModelAdapter, task, n: int) -> torch.Tensor:
    """n virtual tokens cycling through the tokens of the class label words (PEZ's LM init)."""
    ids = [t for w in task.label_words for t in adapter.encode(" " + w)]
    if not ids:
        raise SoftscopeError("the label words tokenise to nothing: pass --label-words or another --init")
    ids = (ids * math.ceil(n / len(ids)))[:n]
    return token_embeddings(adapter).detach().float()[ids].clone()


# ---- one PEZ run ----------------------------------------------------------------------------------------
def pez_start(cfg: PezConfig, weight: float, adapter: ModelAdapter, task,
              init: torch.Tensor | None = None) -> tuple[TrainConfig, torch.Tensor, dict]:
    """One weight's training config, initial prompt and sub-run settings (the fingerprint its folder records)."""
    tcfg = subconfig(TrainConfig, cfg, init="vocab", final_eval="none")
    if init is not None:
        P0 = init.detach().float()
    elif cfg.init == "labels":
        P0 = label_init(adapter, task, cfg.tokens)
    else:
        P0 = init_prompt(adapter, cfg.tokens, cfg.init, torch.Generator().manual_seed(cfg.seed), cfg.init_text)
    return tcfg, P0, fingerprint(tcfg, pez=sweep_settings(cfg), fluency_weight=weight, init_prompt=tensor_digest(P0))


def run_pez(cfg: PezConfig, weight: float, out: str | Path, adapter: ModelAdapter, task, progress: bool = True,
            init: torch.Tensor | None = None, label: str | None = None) -> dict:
    """Train one hard prompt at fluency weight `weight`; select the checkpoint by held-out accuracy; test it.

    `init` (a continuous prompt [n, d]) overrides cfg.init, e.g. to read a trained soft prompt with PEZ. `label` is
    the folder the hard prompt records as its run (default `out`; a Ray worker writes a scratch copy of it)."""
    out = Path(out)
    held, held_name = holdout_task(task, cfg.holdout, cfg.seed)
    tcfg, P0, settings = pez_start(cfg, weight, adapter, task, init)
    terms = [fluency_term(adapter, weight)] if weight > 0 else []
    with Run.open(out, TRAIN, settings, command="pez") as run:
        if run.existing and (out / "pez_summary.json").exists():  # finished with these settings: reuse it
            return read_json(out / "pez_summary.json")
        res = train(tcfg, run, adapter=adapter, task=held, loss_terms=terms, prompt_transform=pez_transform(adapter),
                    init=P0, progress=progress)
        best = max(res.checkpoints, key=lambda c: (c["accuracy"], c["step"]))  # ties: the later (more trained) one
        chosen = SoftPrompt.load(out / best["path"])
        ids = hard_ids(adapter, chosen.tensor)

        scorer = Scorer(adapter, task, max_length=cfg.max_length, verbalizer=cfg.verbalizer)
        test = task.subset("test", cfg.test_examples or None, cfg.seed) if cfg.test_examples >= 0 else []
        P_hard = adapter.embed(torch.tensor(ids)).detach()
        acc = scorer.accuracy(P_hard, test, cfg.eval_batch_size, progress="test" if progress else False) if test else None
        text = adapter.decode(ids)
        hard = SoftPrompt(tensor=P_hard.float().cpu(), model=adapter.name, task=task.name, template=task.template,
                          label_words=list(task.label_words), classes=list(task.classes), step=best["step"],
                          accuracy=acc, extra={"method": "pez", "ids": ids, "text": text, "fluency_weight": weight,
                                               "selected_by": f"{held_name} accuracy", "run": str(label or out)},
                          settings=record(task, adapter, scorer, task_spec=task.origin, data_dir=cfg.data_dir,
                                          seed=cfg.seed, max_train=cfg.max_train, max_test=cfg.max_test,
                                          test_examples=len(test) if test and len(test) < len(task.test) else None))
        hard.save(run.file("hard_prompt.safetensors"))
        summary = {"method": "pez", "task": task.name, "model": adapter.name, "fluency_weight": weight,
                   "tokens": cfg.tokens, "steps": cfg.steps, "ids": ids, "text": text, "selected_step": best["step"],
                   "heldout": held_name, "heldout_accuracy": best["accuracy"], "test_accuracy": acc,
                   "test_examples": len(test), "perplexity": perplexity(adapter, ids), "seconds": res.seconds,
                   "curve": [{"step": c["step"], "heldout_accuracy": c["accuracy"]} for c in res.checkpoints]}
        run.write_json("pez_summary.json", summary)
    return summary


# ---- the sweep: one executor unit per weight ----------------------------------------------------------------
GROWABLE = ("fluency_weight", *PLACEMENT_FIELDS)  # a resumed sweep may add weights or run elsewhere


def pez_unit(ctx: SweepContext, unit: Unit) -> tuple[dict, dict | None]:
    """One weight of a PEZ sweep, here or on a Ray worker: its summary, and from a worker its sub-run's files.

    Depends only on the config and the weight (PEZ's generators are seeded by the config's seed)."""
    a = unit.args
    return sub_run(a["dir"], ctx.in_place, lambda d: run_pez(a["cfg"], a["weight"], d, ctx.adapter, ctx.task,
                                                             ctx.progress, label=a["dir"]))


def pez_plan(cfg: PezConfig, run: Run, adapter: ModelAdapter, task, prefix: str = "") -> WeightSweep:
    """The sweep's units (keys `<prefix>w-<weight>`): every weight without a finished sub-run in <run>/w-<weight>/."""
    return plan_weights(run, "pez", cfg.fluency_weight, lambda w: ("train", pez_start(cfg, w, adapter, task)[2], "pez"),
                        "pez_summary.json", {"cfg": cfg, "tuner": "pez"}, prefix)


def pez_finish(sweep: WeightSweep, task, adapter: ModelAdapter) -> dict:
    """pez.jsonl, pez_summary.json and pez_curves.png once every weight is done; returns the summary."""
    rows, summary = sweep.finish(task.name, adapter.name)
    plot_curves(rows, sweep.run.file("pez_curves.png"), "heldout_accuracy", f"PEZ on {task.name}")
    return summary


def pez(cfg: PezConfig, out: str | Path, adapter: ModelAdapter | None = None, task=None, progress: bool = True) -> dict:
    """PEZ sweep over cfg.fluency_weight: one sub-run per weight (w-<weight>/), a table and curve plots."""
    with Run.open(out, KIND, fingerprint(cfg), growable=GROWABLE) as run:  # more weights may be added
        adapter = adapter or load_model_for(cfg)
        task = task or load_task_for(cfg)
        run.write_config(cfg, task=task.to_dict())
        sweep = pez_plan(cfg, run, adapter, task)
        sweep.execute(pez_unit, SweepContext(adapter, task, adapter, progress=progress), setup=sweep_setup,
                      setup_args=(cfg,), options=cfg, progress=progress)
        return pez_finish(sweep, task, adapter)
