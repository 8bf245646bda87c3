"""The interpretability/accuracy trade-off of discrete prompts, measured on one task (Patel et al. 2025, §5).

One run: a reference soft prompt (prompt tuning) and its nearest-token projection; PEZ at each fluency weight;
RLPrompt at each fluency weight (each tuner × weight one executor unit, so the two sweeps run together, locally
or on a Ray cluster; the driver then scores every prompt). Every prompt is scored on the same seeded test examples:
accuracy, faithfulness to the reference soft prompt (agreement, KL), perplexity and dictionary-word share. Plots:
accuracy vs perplexity and accuracy vs agreement. It also lists the *odd* prompts that the perplexity proxy
favours: low perplexity, yet repetitive, made of function words/punctuation, or not dictionary words.
"""

from __future__ import annotations

import collections
import re
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch

from ..engine.config import LR, SEED, ModelOptions, TaskOptions, TrainConfig, option, subconfig, validate
from ..engine.executor import PLACEMENT_FIELDS, ExecutorOptions, Unit, sub_run
from ..engine.metrics import STOP_WORDS
from ..engine.models import load_model_for
from ..engine.projection import project
from ..engine.prompts import SoftPrompt
from ..engine.runs import Run, fingerprint, read_json, register_kind, save_figure
from ..engine.scoring import Scorer
from ..engine.sweeps import Sweep, SweepContext, run_sweeps, sweep_settings, sweep_setup
from ..engine.tasks import load_task_for
from ..engine.training import KIND as TRAIN, train
from .interpret import dictionary_share, interpret_reading
from .pez import GROWABLE as PEZ_GROWABLE
from .pez import PezConfig, pez_finish, pez_plan, pez_unit
from .rlprompt import GROWABLE as RL_GROWABLE
from .rlprompt import RLPromptConfig, rlprompt_finish, rlprompt_plan, rlprompt_unit

KIND = register_kind("tradeoff")


@dataclass
class TradeoffConfig(ModelOptions, TaskOptions, ExecutorOptions):
    """Weight sweeps of PEZ and RLPrompt beside a soft prompt, on one task (one executor unit per tuner × weight)."""

    examples: int = option(300, "seeded test examples every prompt is scored on (0 = all)", ge=0)
    soft_tokens: int = option(10, "virtual tokens of the reference soft prompt", ge=1)
    soft_steps: int = option(40, "prompt-tuning steps of the reference soft prompt", ge=1)
    soft_lr: float = option(3e-2, "its learning rate", **LR)
    pez_weights: list[float] = option([0.0, 0.1, 0.3, 0.5], "PEZ fluency weights w (0 <= w < 1)", ge=0, lt=1)
    pez_tokens: int = option(10, "PEZ prompt length", ge=1)
    pez_steps: int = option(50, "PEZ steps per weight", ge=0)
    pez_batch_size: int = option(8, "PEZ batch size (paper: 16)", ge=1)
    pez_lr: float = option(0.3, "PEZ learning rate", **LR)
    rl_weights: list[float] = option([0.0, 1.0, 5.0], "RLPrompt fluency weights lambda", ge=0)
    rl_tokens: int = option(5, "RLPrompt prompt length", ge=1)
    rl_steps: int = option(60, "RLPrompt steps per weight", ge=0)
    rl_prompts_per_step: int = option(8, "RLPrompt prompts per step", ge=2)
    rl_batch_size: int = option(4, "RLPrompt inputs per prompt per step", ge=1)
    rl_lr: float = option(5e-5, "RLPrompt MLP learning rate", **LR)
    rl_fluent: bool = option(False, "RLPrompt fluent mode (sample among the LM's top-k)")
    rl_eval_every: int = option(0, "RLPrompt: score the greedy prompt every this many steps (0 = rl_steps / 5)", ge=0)
    rl_selection_examples: int = option(0, "RLPrompt: held-out examples for selection (0 = selection_examples)", ge=0)
    selection_examples: int = option(100, "held-out examples for checkpoint selection (PEZ, RLPrompt)", ge=1)
    holdout: int = option(300, "held-out examples cut from train for selection when the task has no dev split", ge=1)
    max_perplexity: float = option(1000.0, "scrutability threshold on perplexity", gt=0)
    min_dictionary_share: float = option(0.7, "scrutability threshold on dictionary-word share", ge=0, le=1)
    min_agreement: float = option(0.9, "faithfulness threshold on agreement with the soft prompt", ge=0, le=1)
    seed: int = option(0, "seed for everything", **SEED)

    def __post_init__(self) -> None:
        self.pez_weights = [float(w) for w in self.pez_weights or []]
        self.rl_weights = [float(w) for w in self.rl_weights or []]
        validate(self)
        ExecutorOptions.__post_init__(self)


# ---- odd prompts ------------------------------------------------------------------------------------------
def oddness(text: str, ids: list[int]) -> list[str]:
    """Why a prompt is odd even if fluent by the proxy: repeated tokens, only function words/punctuation,
    non-dictionary words. Empty when none applies."""
    why = []
    top, n = collections.Counter(ids).most_common(1)[0] if ids else (None, 0)
    if ids and n / len(ids) >= 0.4:
        why.append(f"one token is {n}/{len(ids)} of the prompt")
    elif any(a == b for a, b in zip(ids, ids[1:])):
        why.append("a token repeats back to back")
    words = [re.sub(r"[^\w]", "", w.lower()) for w in text.split()]
    content = [w for w in words if w and w not in STOP_WORDS]
    if words and not content:
        why.append("only function words and punctuation")
    share, bad = dictionary_share(text)
    if share < 0.5:
        why.append(f"{len(bad)} of {len(text.split())} words are not dictionary words")
    return why


# ---- the run ----------------------------------------------------------------------------------------------
def tradeoff(cfg: TradeoffConfig, out: str | Path, adapter=None, task=None, progress: bool = True) -> dict:
    """Run (or resume) the sweeps and write tradeoff.jsonl, tradeoff_summary.json and the two plots.

    Its parts (soft/, pez/, rlprompt/, the score cache) are reused only under the same settings."""
    with Run.open(out, KIND, fingerprint(cfg), growable=GROWABLE) as run:  # more weights may be added
        adapter = adapter or load_model_for(cfg)
        task = task or load_task_for(cfg)
        run.write_config(cfg, task=task.to_dict())
        return _tradeoff(cfg, run, adapter, task, progress)


GROWABLE = ("pez_weights", "rl_weights", *PLACEMENT_FIELDS)  # more weights may be added, units run elsewhere


def tradeoff_unit(ctx: SweepContext, unit: Unit) -> tuple[dict | None, dict | None]:
    """One unit of the trade-off, here or on a Ray worker: the reference soft prompt, or a tuner × weight (a PEZ
    or an RLPrompt sub-run)."""
    tuner = unit.args["tuner"]
    return (reference_unit if tuner == "reference" else pez_unit if tuner == "pez" else rlprompt_unit)(ctx, unit)


def reference_unit(ctx: SweepContext, unit: Unit) -> tuple[None, dict | None]:
    """Train the reference soft prompt into its sub-run folder (soft/), in place or from a worker as files."""
    a = unit.args

    def train_reference(rd: Path) -> None:
        with Run.open(rd, TRAIN, a["settings"], command="tradeoff") as r:
            train(a["cfg"], r, adapter=ctx.adapter, task=ctx.task, progress=ctx.progress)

    return sub_run(a["dir"], ctx.in_place, train_reference)


def sub_configs(cfg: TradeoffConfig) -> tuple[TrainConfig, PezConfig, RLPromptConfig]:
    """The reference soft prompt's, PEZ's and RLPrompt's configs, each carrying the model options (model, device,
    dtype, trust_remote_code) and the task options of the trade-off."""
    common = dict(model=cfg.model, device=cfg.device, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code,
                  task=cfg.task, data_dir=cfg.data_dir, seed=cfg.seed, holdout=cfg.holdout, test_examples=-1,
                  eval_examples=cfg.selection_examples)  # each prompt is tested once, by the driver
    tcfg = subconfig(TrainConfig, cfg, tokens=cfg.soft_tokens, steps=cfg.soft_steps, lr=cfg.soft_lr,
                     checkpoint_every=cfg.soft_steps, eval_examples=cfg.selection_examples, final_eval="none")
    pcfg = PezConfig(**common, tokens=cfg.pez_tokens, steps=cfg.pez_steps, batch_size=cfg.pez_batch_size,
                     lr=cfg.pez_lr, checkpoint_every=max(1, cfg.pez_steps // 5), fluency_weight=cfg.pez_weights)
    rcfg = RLPromptConfig(**common, tokens=cfg.rl_tokens, steps=cfg.rl_steps,
                          prompts_per_step=cfg.rl_prompts_per_step, batch_size=cfg.rl_batch_size, lr=cfg.rl_lr,
                          fluent=cfg.rl_fluent, eval_every=cfg.rl_eval_every or max(1, cfg.rl_steps // 5),
                          fluency_weight=cfg.rl_weights)
    if cfg.rl_selection_examples:
        rcfg.eval_examples = cfg.rl_selection_examples
    return tcfg, pcfg, rcfg


def _tradeoff(cfg: TradeoffConfig, run: Run, adapter, task, progress: bool) -> dict:
    out = run.path
    examples = task.subset("test", cfg.examples or None, cfg.seed)
    tcfg, pcfg, rcfg = sub_configs(cfg)

    # 1. the reference soft prompt: a unit of its own (key `reference`) unless soft/ holds it already
    soft_dir = out / "soft"
    sweep = {k: v for k, v in sweep_settings(cfg).items() if k not in GROWABLE}
    settings = fingerprint(tcfg, tradeoff=sweep)
    with Run.open(soft_dir, TRAIN, settings, command="tradeoff") as r:  # other settings there: refused now
        soft_done = r.existing and (soft_dir / "prompt.safetensors").exists()
    reference = Sweep(run, [] if soft_done else [Unit("reference", {"tuner": "reference", "cfg": tcfg,
                                                                    "dir": str(soft_dir), "settings": settings})])

    # 2-3. the PEZ and RLPrompt weight sweeps: every tuner × weight is one unit, all in one executor call with the
    # reference, so on a cluster the reference trains beside the tuners
    with ExitStack() as stack:  # the two sweep folders stay locked until their tables are written
        plans = {}
        if cfg.pez_weights:
            sub = _sweep_run(stack, out / "pez", "pez", pcfg, PEZ_GROWABLE, task)
            plans["pez"] = pez_plan(pcfg, sub, adapter, task, prefix="pez/")
        if cfg.rl_weights:
            sub = _sweep_run(stack, out / "rlprompt", "rlprompt", rcfg, RL_GROWABLE, task)
            plans["rlprompt"] = rlprompt_plan(rcfg, sub, adapter, prefix="rlprompt/")
        run_sweeps([reference, *plans.values()], tradeoff_unit, SweepContext(adapter, task, adapter, progress=progress),
                   setup=sweep_setup, setup_args=(cfg,), options=cfg, progress=progress)
        for tuner, finish in (("pez", pez_finish), ("rlprompt", rlprompt_finish)):
            if tuner in plans:
                finish(plans[tuner], task, adapter)

    # 4. the driver scores every prompt against the reference
    soft = SoftPrompt.load(soft_dir / "prompt.safetensors")
    scorer = Scorer(adapter, task)
    cache_file = out / "scores_cache.json"  # finished scores, so a resumed or extended sweep does not redo them
    cache = read_json(cache_file) if cache_file.exists() else {}
    if cache.get("examples") != len(examples) or cache.get("soft_step") != soft.step:
        cache = {"examples": len(examples), "soft_step": soft.step, "rows": {}}
    if "soft_logprobs" in cache:
        lp_soft = torch.tensor(cache["soft_logprobs"])
    else:
        lp_soft = scorer.predict(soft.tensor, examples, progress="soft prompt" if progress else False)
        cache["soft_logprobs"] = lp_soft.tolist()
        run.write_json(cache_file.name, cache)
    gold = torch.tensor([r.label for r in scorer.rows(examples)])
    soft_acc = float((lp_soft.argmax(-1) == gold).float().mean())

    def score(method: str, weight, ids: list[int], extra: dict | None = None) -> dict:
        key = f"{method}|{weight}|{','.join(map(str, ids))}"
        if key in cache["rows"]:
            return cache["rows"][key]
        row = _score(method, weight, ids, extra)
        cache["rows"][key] = row
        run.write_json(cache_file.name, cache)
        return row

    def _score(method: str, weight, ids: list[int], extra: dict | None = None) -> dict:
        rep = interpret_reading(adapter, task, soft, ids, examples=examples, soft_logprobs=lp_soft,
                                min_agreement=cfg.min_agreement, max_perplexity=cfg.max_perplexity,
                                min_dictionary_share=cfg.min_dictionary_share)
        f, s = rep["faithfulness"], rep["scrutability"]
        return {"method": method, "weight": weight, "text": rep["text"], "ids": ids, "accuracy": f["reading_accuracy"],
                "perplexity": s["perplexity"], "dictionary_share": s["dictionary_share"], "agreement": f["agreement"],
                "kl": f["kl"], "accuracy_gap": f["accuracy_gap"], "faithful": rep["faithful"],
                "scrutable": rep["scrutable"], "interpretable": rep["interpretable"], "odd": oddness(rep["text"], ids),
                **(extra or {})}

    rows = [{"method": "soft prompt", "weight": None, "text": None, "ids": None, "accuracy": soft_acc,
             "perplexity": None, "dictionary_share": None, "agreement": 1.0, "kl": 0.0, "accuracy_gap": 0.0}]

    for metric in ("cos", "l2"):
        rows.append(score(f"projection ({metric})", None, project(adapter, soft.tensor, metric, 1).ids))

    for tuner, method in (("pez", "PEZ"), ("rlprompt", "RLPrompt")):
        for w in plans[tuner].weights if tuner in plans else []:
            r = plans[tuner].summaries[w]
            rows.append(score(method, w, r["ids"], {"selected_step": r["selected_step"]}))

    run.write_jsonl("tradeoff.jsonl", rows)
    discrete = [r for r in rows if r["ids"]]
    odd = sorted([r for r in discrete if r["odd"]], key=lambda r: r["perplexity"])
    summary = {"task": task.name, "model": adapter.name, "examples": len(examples), "soft_accuracy": soft_acc,
               "rows": [{k: r.get(k) for k in ("method", "weight", "text", "accuracy", "perplexity", "dictionary_share",
                                                "agreement", "kl", "interpretable", "odd")} for r in rows],
               "max_perplexity": cfg.max_perplexity,
               "odd_prompts_by_perplexity": [{**{k: r[k] for k in ("method", "weight", "text", "perplexity", "odd")},
                                              "passes_perplexity": r["perplexity"] <= cfg.max_perplexity} for r in odd]}
    run.write_json("tradeoff_summary.json", summary)
    plot_tradeoff(rows, out, task.name)
    return summary


def _sweep_run(stack: ExitStack, path: Path, kind: str, cfg, growable: tuple[str, ...], task) -> Run:
    """A tuner's sweep folder in the trade-off (pez/, rlprompt/), its config written, open until the stack closes."""
    run = stack.enter_context(Run.open(path, kind, fingerprint(cfg), growable=growable))
    run.write_config(cfg, task=task.to_dict())
    return run


def plot_tradeoff(rows: list[dict], out: Path, task_name: str) -> None:
    """tradeoff_perplexity.png (accuracy vs log perplexity) and tradeoff_faithfulness.png (accuracy vs agreement)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    soft = rows[0]["accuracy"]
    for key, fname, xlabel, logx in (("perplexity", "tradeoff_perplexity.png", "perplexity under the LM (log)", True),
                                     ("agreement", "tradeoff_faithfulness.png", "agreement with the soft prompt", False)):
        fig, ax = plt.subplots(figsize=(5.8, 4))
        for method, marker in (("PEZ", "o"), ("RLPrompt", "s")):
            pts = [r for r in rows if r["method"] == method]
            if pts:
                ax.plot([r[key] for r in pts], [r["accuracy"] for r in pts], marker=marker, label=method)
                for r in pts:
                    ax.annotate(f"{r['weight']:g}", (r[key], r["accuracy"]), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
        for r in rows:
            if r["method"].startswith("projection"):
                ax.scatter([r[key]], [r["accuracy"]], marker="x", color="gray", label=r["method"])
        ax.axhline(soft, color="k", ls="--", lw=0.8, label="soft prompt")
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{task_name}: accuracy vs {key} (labels: weight)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, out / fname)
