"""The run (step 2 and the wiring of 3-5): one prompt per strength × seed trained on biased data and measured,
as resumable executor units; the positive control; rescoring mentions of a finished run."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ...engine.config import LR, SEED, DataOptions, ModelOptions, TrainConfig, option, subconfig, validate
from ...engine.errors import SoftscopeError
from ...engine.executor import PLACEMENT_FIELDS, ExecutorOptions, Unit, WorkerContext, sub_run
from ...engine.metrics import unexpected_words
from ...engine.models import ModelAdapter, load_model_for, text_embeddings
from ...engine.patching import layer_pairs
from ...engine.prompts import SoftPrompt
from ...engine.runs import Run, fingerprint, read_json, register_kind
from ...engine.scoring import Scorer
from ...engine.sweeps import RowSweep, Sweep, run_sweeps
from ...engine.target_prompts import DEMO_TEXT, build as build_target
from ...engine.tasks import Example, Task
from ...engine.training import KIND as TRAIN, train
from ..describe import describe_prompt
from . import features
from .features import Feature, _favoured, biased_task, control_for, make_biased
from .metrics import biased_prediction_rate, score_mentions
from .report import plot_bias, summarize_bias

KIND = register_kind("bias")
# config fields a resumed `bias run` may change (and where its units run)
GROWABLE = ("strengths", "seeds", "first_seed", "positive_control", "positive_control_text", *PLACEMENT_FIELDS)
POSITIVE = "positive-control"  # the prompt folder (and summary key) of the positive control


@dataclass
class BiasRunConfig(ModelOptions, DataOptions, ExecutorOptions):
    """Train prompts on biased data at several strengths and seeds (one executor unit each); measure biased
    predictions and bias mentions."""

    feature: str = option("word:Spielberg", 'the planted feature: word:NAME, phrase:"some words" or punct:MARKS')
    control: str | None = option(None, "neutral control feature (default: word:Johnson, phrase:\"as noted earlier\", punct:--)")
    favoured: str | None = option(None, "class the feature co-occurs with (default: the first class)")
    strengths: list[float] = option([0.0, 0.5, 0.8, 1.0], "co-occurrence strengths in [0, 1]", ge=0, le=1)
    seeds: int = option(2, "seeds per strength (prompt init, data order, feature placement)", ge=1)
    first_seed: int = option(0, "seeds run first_seed .. first_seed+seeds-1 (split seeds over processes / run dirs)", **SEED)
    train_examples: int = option(240, "training examples per prompt (seeded sample of the train split)", ge=1)
    tokens: int = option(7, "virtual tokens", ge=1)
    steps: int = option(30, "optimizer steps per prompt", ge=1)
    batch_size: int = option(8, "examples per step", ge=1)
    lr: float = option(3e-2, "AdamW learning rate", **LR)
    init: str = option("vocab", "prompt init: vocab or random",
                       choices=("vocab", "random"), why="a text init would leak a description into the prompt")
    heldout: int = option(100, "clean held-out test examples for the biased-prediction rate and accuracy", ge=1)
    checkpoint_eval: int = option(16, "test examples for the accuracy training records at its step-0 and final checkpoints",
                             ge=1)
    layers: str = option("every:8", "InSPEcT layer grid: all, every:K, band:A-B or pairs 4:4,8:4")
    pool: str = option("elaborated", "target-prompt pool (elaborated, elaborated-cues-first, plain, ...)")
    n_targets: int = option(2, "seeded target prompts per prompt", ge=1)
    demos: int = option(3, "demonstrations per target prompt", ge=1)
    max_new_tokens: int = option(20, "greedy tokens per description", ge=1)
    threshold: float = option(0.8, "embedding similarity at which a description span counts as naming the feature",
                         gt=0, le=1)
    mention_terms: list[str] | None = option(None, "extra strings that count as naming the feature")
    gen_batch_size: int = option(64, "layer pairs generated together", ge=1)
    positive_control: bool = option(False, "also describe a prompt set to e(a sentence naming the cue): the mention "
                                      "detector must fire on it (--control is the neutral control feature)")
    positive_control_text: str | None = option(None, "that sentence (default: 'The cue \"FEATURE\" means FAVOURED.')")

    def __post_init__(self) -> None:
        f = Feature.parse(self.feature)
        if self.positive_control_text is not None and not self.positive_control_text.strip():
            raise SoftscopeError("--positive-control-text must not be empty")
        control_for(f, self.control)
        try:
            self.strengths = [float(s) for s in self.strengths]
        except (TypeError, ValueError):
            raise SoftscopeError(f"--strengths {self.strengths}: give numbers in [0, 1], e.g. 0,0.5,0.8,1") from None
        if not self.strengths:
            raise SoftscopeError("--strengths is empty: give values in [0, 1], e.g. 0,0.5,0.8,1")
        validate(self)
        if self.first_seed + self.seeds > SEED["lt"]:
            raise SoftscopeError(f"--first-seed + --seeds must stay below {SEED['lt']}")
        if self.train_examples < self.batch_size:
            raise SoftscopeError("--train-examples must be at least --batch-size")
        ExecutorOptions.__post_init__(self)


def _prompt_name(strength: float, seed: int) -> str:
    return f"s{strength:.2f}-seed{seed}"


def measure_prompt(adapter, task: Task, prompt: torch.Tensor, cfg: BiasRunConfig, feature: Feature, control: Feature,
                   favoured: str, seed: int, heldout: list[Example], pairs, targets, demo_text: str) -> tuple[dict, list]:
    """Biased-prediction rate, accuracy, descriptions and bias-mention rate of one trained prompt."""
    scorer = Scorer(adapter, task)
    fav = task.classes.index(favoured)
    rate = biased_prediction_rate(lambda exs: scorer.predict(prompt, exs), heldout, feature, control, fav, seed)
    p0, pf, _ = rate.pop("_predictions")
    kept = [e for e in heldout if not feature.present(e.text) and not control.present(e.text)]
    gold = [task.label_index(e.label) for e in kept]
    rate["accuracy"] = sum(a == g for a, g in zip(p0, gold)) / len(gold)
    rows = describe_prompt(adapter, prompt, pairs, targets, cfg.max_new_tokens, cfg.gen_batch_size)
    res = {**rate, **score_mentions(rows, feature, control, cfg.threshold, cfg.mention_terms or ()),
           "descriptions": len(rows),
           "unexpected_words": unexpected_words([r["cut"] for r in rows], task.classes, task.references, demo_text,
                                                top=10)}
    return res, rows


def rescore_mentions(out: str | Path) -> list[dict]:
    """Recompute the mention columns of a finished `bias run` from its saved descriptions (e.g. after a change
    of the mention rule or --threshold); rewrites descriptions.jsonl and bias.jsonl; returns the rows."""
    with Run.open(out, KIND, command="bias rescore") as run:  # a bias run's folder, locked while rewritten
        cfg = read_json(run.path / "config.json")["config"]
        feature = Feature.parse(cfg["feature"])
        control = control_for(feature, cfg.get("control"))
        rows = run.read_jsonl("bias.jsonl")
        for row in rows:
            name = f"prompts/{row['prompt']}/descriptions.jsonl"
            desc = run.read_jsonl(name)
            row.update(score_mentions(desc, feature, control, cfg["threshold"], cfg.get("mention_terms") or ()))
            run.write_jsonl(name, desc)
        run.write_jsonl("bias.jsonl", rows)
    return rows


def run(cfg: BiasRunConfig, out: str | Path, adapter=None, progress: bool = True, command: str = "bias run") -> dict:
    """The whole protocol; resumable (finished prompts are read back from bias.jsonl, training resumes)."""
    t0 = time.time()
    out = Path(out)
    feature = Feature.parse(cfg.feature)
    control = control_for(feature, cfg.control)
    base = features.load_base_task(cfg.task, cfg.data_dir)
    fav = _favoured(base, cfg.favoured)
    # a resumed run may change which strengths and seeds it covers (GROWABLE), nothing else
    with Run.open(out, KIND, fingerprint(cfg), growable=GROWABLE, command=command) as run:
        run.write_config(cfg, task=base.to_dict(), favoured=fav, control=control.spec)
        return _bias_sweep(cfg, run, t0, feature, control, base, fav, adapter, progress, command)


@dataclass
class BiasContext(WorkerContext):
    """What every strength × seed unit shares: the model, the clean task (`task`), the features, the held-out
    examples, the layer grid and target prompts."""

    feature: Feature
    control: Feature
    favoured: str
    heldout: list[Example]
    pairs: list
    targets: list
    demo_text: str


def bias_context(cfg: BiasRunConfig, adapter: ModelAdapter, base: Task, progress: bool = True) -> BiasContext:
    """The shared context, the same on the driver and on every worker (all of it follows from the config)."""
    feature = Feature.parse(cfg.feature)
    targets = [build_target(adapter, cfg.pool, cfg.tokens, i, cfg.demos) for i in range(cfg.n_targets)]
    return BiasContext(adapter, base, feature, control_for(feature, cfg.control), _favoured(base, cfg.favoured),
                       base.subset("test", cfg.heldout, 12345), layer_pairs(cfg.layers, adapter.n_layers), targets,
                       DEMO_TEXT + " " + " ".join(t.text for t in targets), progress=progress)


def bias_setup(cfg: BiasRunConfig) -> BiasContext:
    """A Ray worker's context, built from the config alone (once per worker, then kept)."""
    return bias_context(cfg, load_model_for(cfg), features.load_base_task(cfg.task, cfg.data_dir))


def _bias_train_cfg(cfg: BiasRunConfig, seed: int) -> TrainConfig:
    """The training config of one prompt: the run's model options (trust_remote_code included), task, tokens, steps,
    batch size, lr and init carried over by name."""
    return subconfig(TrainConfig, cfg, checkpoint_every=cfg.steps, eval_examples=cfg.checkpoint_eval,
                     final_eval="none", seed=seed)


def bias_unit(ctx: BiasContext, unit: Unit) -> tuple[dict, dict | None]:
    """One strength × seed, here or on a Ray worker: train a prompt on data biased at that strength and measure it.
    Returns its bias.jsonl row and, from a worker, its prompt folder's files. The unit keyed `positive-control`
    measures the positive control instead: (its row with its descriptions, None).

    Depends only on the config, the strength and the seed (the training sample, the feature's placement, the init
    and the data order are all seeded by the seed), so local and Ray runs give the same rows."""
    a = unit.args
    if unit.key == POSITIVE:
        return positive_control(ctx, a["cfg"], a["text"]), None
    cfg, strength, seed = a["cfg"], a["strength"], a["seed"]
    t1 = time.time()

    def train_and_measure(rd: Path) -> dict:
        sample = ctx.task.subset("train", cfg.train_examples, seed)
        data = make_biased(sample, ctx.task.classes, ctx.feature, strength, ctx.favoured, seed)
        task = biased_task(ctx.task, data, ctx.feature, strength)
        with Run.open(rd, TRAIN, a["settings"], command=a["command"]) as r:
            if r.existing and (rd / "prompt.safetensors").exists():
                prompt = SoftPrompt.load(rd / "prompt.safetensors").tensor
            else:
                prompt = train(_bias_train_cfg(cfg, seed), r, adapter=ctx.adapter, task=task,
                               progress=ctx.progress).prompt.tensor
            r.write_json("bias_data.json", {"shares": data.shares, "counts": data.counts, "dropped": data.dropped})
            res, rows = measure_prompt(ctx.adapter, task, prompt, cfg, ctx.feature, ctx.control, ctx.favoured, seed,
                                       ctx.heldout, ctx.pairs, ctx.targets, ctx.demo_text)
            r.write_jsonl("descriptions.jsonl", rows)
        return {"prompt": unit.key, "strength": strength, "seed": seed, "shares": data.shares, **res,
                "seconds": time.time() - t1}

    return sub_run(a["dir"], ctx.in_place, train_and_measure)


class PromptSweep(RowSweep):
    """bias.jsonl: one row per strength × seed prompt, landed after its prompt folder (a row always has its
    descriptions); each row is printed as it lands when `progress`."""

    def __init__(self, run: Run, progress: bool):
        super().__init__(run, "bias.jsonl", lambda r: r["prompt"], lambda unit, result: ([result[0]], result[1]))
        self.progress = progress

    def record(self, unit: Unit, result: tuple[dict, dict | None]) -> None:
        super().record(unit, result)
        row = result[0]
        if self.progress:
            print(f"{row['prompt']}: acc {row['accuracy']:.3f}  biased-prediction rate "
                  f"{row['biased_prediction_rate']:+.3f}  mention rate {row['mention_rate']:.3f}  "
                  f"({row['seconds']:.0f} s)", flush=True)


class PositiveControlSweep(Sweep):
    """The positive control's unit (when it is not done yet): its descriptions, then its row, in their own files."""

    def record(self, unit: Unit, result: tuple[dict, None]) -> None:
        row = result[0]
        self.run.write_jsonl(f"prompts/{POSITIVE}/descriptions.jsonl", row.pop("rows"))
        self.run.write_json("positive_control.json", row)


def _bias_sweep(cfg: BiasRunConfig, run: Run, t0: float, feature: Feature, control: Feature, base: Task, fav: str,
                adapter, progress: bool, command: str) -> dict:
    out = run.path
    sweep = {k: v for k, v in fingerprint(cfg)["config"].items() if k not in GROWABLE}
    adapter = adapter or load_model_for(cfg)
    ctx = bias_context(cfg, adapter, base, progress=progress)
    prompts = PromptSweep(run, progress)
    done = prompts.done
    # seeds outer: an interrupted local run already holds a full strength curve for the first seeds
    grid = {_prompt_name(s, seed): (s, seed) for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds)
            for s in cfg.strengths}
    for name, (strength, seed) in grid.items():
        if name in done:
            continue
        rd = out / "prompts" / name
        settings = fingerprint(_bias_train_cfg(cfg, seed), bias=sweep, strength=strength)
        sub = f"{command} (strength {strength}, seed {seed})"
        if rd.exists():  # a prompt folder left with other settings is refused now, before any unit runs
            Run.open(rd, TRAIN, settings, command=sub).close()
        prompts.units.append(Unit(name, {"cfg": cfg, "strength": strength, "seed": seed, "dir": str(rd),
                                         "settings": settings, "command": sub}))

    pc_text = positive_control_text(feature, fav, cfg.positive_control_text)
    pc_path = out / "positive_control.json"
    positive = PositiveControlSweep(run)
    if cfg.positive_control and not (pc_path.exists() and read_json(pc_path).get("text") == pc_text):
        positive.units.append(Unit(POSITIVE, {"cfg": cfg, "text": pc_text}))

    run_sweeps([prompts, positive], bias_unit, ctx, setup=bias_setup, setup_args=(cfg,), options=cfg,
               progress=progress)
    done = prompts.done
    results = [done[name] for name in grid]
    summary = summarize_bias(results, cfg.strengths, feature.spec, control.spec, fav, base.name, cfg.model)
    if cfg.positive_control:
        summary["positive_control"] = read_json(pc_path)
    summary["seconds"] = time.time() - t0
    run.write_json("bias_summary.json", summary)
    summary["plots"] = [str(p) for p in plot_bias(results, summary, out)]
    return summary


def positive_control_text(feature: Feature, favoured: str, text: str | None = None) -> str:
    """The positive control's sentence: `text`, else one that names the cue and the class it points to."""
    return text or f'The cue "{feature.value}" means {favoured}.'


def positive_control(ctx: BiasContext, cfg: BiasRunConfig, text: str) -> dict:
    """Measure the untrained prompt P = e(`text`, a sentence naming the cue) like every trained prompt (same grid,
    pools, seeds, mention rule): its mention rate shows whether the detector fires when the cue is in the prompt.
    Returns its row with its descriptions under `rows`; the driver keeps them in positive_control.json and
    prompts/positive-control/, not in bias.jsonl or the correlations."""
    _, P = text_embeddings(ctx.adapter, text)
    targets = [build_target(ctx.adapter, cfg.pool, P.shape[0], i, cfg.demos) for i in range(cfg.n_targets)]
    t1 = time.time()
    res, rows = measure_prompt(ctx.adapter, ctx.task, P, cfg, ctx.feature, ctx.control, ctx.favoured,
                               cfg.first_seed, ctx.heldout, ctx.pairs, targets, ctx.demo_text)
    return {"prompt": POSITIVE, "text": text, "tokens": int(P.shape[0]), **res, "seconds": time.time() - t1,
            "rows": rows}
