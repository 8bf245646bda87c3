"""Prompt waywardness: soft prompts that solve a task while their projection reads as any text you choose.

Khashabi et al. 2022, "Prompt Waywardness: The Curious Case of Discretized Interpretation of Continuous
Prompts" (NAACL). For a target text t of n tokens, train an n-token prompt P on

    L = CE_task(P) + γ · Σ_i ‖p_i − e(t_i)‖² / n        (e = the frozen input embeddings, with any embed scale)

then project P by Euclidean nearest neighbour and score the decoded projection against t with SQuAD word F1
(prompt-F1). The claim: for most targets some γ gives F1 ≥ 0.9 within ~2% of the γ = 0 accuracy, and larger
models are more wayward. The authors' public scripts compute the γ term but never hand γ to training (every γ
ran as 0); here the term is a `training.LossTerm` that really enters the loss, and tests check that it does.

Settings (paper): γ ∈ {0, 1e-4, 5e-4, 1e-3, 3e-3, 5e-3, 1e-2, 3e-2}, AdamW lr 0.01, linear decay, grad clip 1.0,
templates "It was %s ." (SST-2/5), "Subject: %s." (AG News), "Q: %s :" (TREC), "It's all %s ." (SUBJ).
Protocols (see PROTOCOLS): `paper` is the authors' driver as released (every γ from e(t), 2000 steps, train seeds
1/10/100 averaged, F1 > 0.98, their selection rule); `cpu` is a CPU-sized test of the claim (γ = 0 and γ > 0 from
the same start, each early-stopped on dev accuracy, the drop with a paired bootstrap interval); `quick` is the
older 16-step subset and `full` the paper's targets and γ grid with softscope's own training (not the paper's).

Outputs (run dir): config.json, wayward.jsonl (one row per target × γ, appended as each finishes, so a killed
sweep resumes where it stopped), prompts/*.safetensors, wayward_summary.json, f1_vs_accuracy.png,
drop_vs_length.png. `compare` tabulates several sweeps (e.g. two models) side by side.
"""
# size: waywardness: target I/O, the objective, early stopping, the sweep, statistics and tables; splitting it into a package (objective / sweep / report) is open work.

from __future__ import annotations

import copy
import dataclasses
import json
import random
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..engine.carry import record as record_settings
from ..engine.config import TrainConfig, option, subconfig, validate
from ..engine.errors import SoftscopeError
from ..engine.inputs import read_json_file, read_text_file
from ..engine.executor import PLACEMENT_FIELDS, ExecutorOptions, Unit, run_units
from ..engine.metrics import word_f1
from ..engine.models import ModelAdapter, choose_autocast, load_model_for, text_embeddings, token_embeddings
from ..engine.projection import project
from ..engine.prompts import SoftPrompt
from ..engine.runs import Run, fingerprint, read_json, read_jsonl, register_kind, save_figure
from ..engine.scoring import Scorer
from ..engine.stats import paired_bootstrap
from ..engine.tasks import BUILTIN, WAYWARD_TEMPLATES, data_dir, load_task
from ..engine.training import KIND as TRAIN, LossTerm, init_prompt, tensor_digest, train, train_many

KIND = register_kind("wayward")

PAPER_GAMMAS = [0.0, 1e-4, 5e-4, 1e-3, 3e-3, 5e-3, 1e-2, 3e-2]
N_BOOT = 2000  # paired bootstrap resamples for the drop's interval (examples × resamples stay a few MB)

# Presets. quick: sized for 2 free CPU cores (< 90 min for SST-2 and AG News × both packaged models): 8 targets —
# 4 task definitions spread over natural_prompts.json (every 8th) alternating with one Pile sentence each from
# pile_n{4,7,14,28} for the length axis — 4 γ, 16 steps at lr 3e-2 (batch 8) trained under bf16 autocast where the
# CPU has native bf16 ("auto": faster on AVX512-BF16, emulated and far slower elsewhere, so float32 there; the
# distance term and Adam stay float32), accuracy
# scored in float32 on a fixed seeded 200-example test subset. The γ = 0
# baseline starts from vocabulary embeddings (plain prompt tuning) and the γ > 0 prompts start at e(t): in 16 steps
# Adam moves a coordinate at most Σ lr ≈ 0.24, too little to carry a vocabulary start into the target's
# nearest-neighbour cells (measured on SmolLM2/SST-2: distance 18.3 → 16.9 at γ = 3e-2, F1 0). So the short sweep
# asks: does a prompt held at t learn the task as well as a free one?
# full: the paper's targets and γ grid (32 unrelated definitions + the task's 5 true descriptions, 8 γ) trained the
# softscope way (vocabulary start, one seed, 300 steps): NOT the authors' protocol, which is `paper`.
# paper: the authors' main.py/run.py as released — init "manual" (every γ, γ = 0 included, starts at e(t)), 2000
# steps, AdamW lr 0.01, no warm-up, linear decay, grad clip 1.0, batch 8 (4 on their "long" datasets, with inputs cut
# at 256 tokens instead of 128), train seeds 1, 10, 100 with accuracy and prompt-F1 averaged over seeds per γ, the
# γ grid of their "effect of γ" runs, F1 threshold 0.98 (strictly above), their selection rule (see per_target),
# the final step's prompt, the whole test set. GPU work: 37 targets × 8 γ × 3 seeds × 2000 steps.
# cpu: a CPU-sized protocol that can test the claim — γ = 0 and γ = 1e-2 (the authors' default γ) both from e(t),
# each trained (constant lr 0.01, batch 8, at most 400 steps) until its dev accuracy has not improved for 3
# evaluations 25 steps apart, the best-dev prompt kept; the quick protocol's 4 shortest targets; 300 test examples;
# the drop vs γ = 0 with a 95% paired bootstrap interval, "within 2 points" only when the whole interval is.
PAPER_LONG_TASKS = ("subj", "agnews")  # the authors halve the batch and allow 256 tokens on these
PAPER_LABEL_WORDS = {"sst2": ["terrible", "great"], "agnews": ["World", "Sports", "Business", "Technology"]}
PROTOCOLS: dict[str, dict] = {
    "quick": {"gamma": [0.0, 1e-3, 1e-2, 3e-2], "steps": 16, "lr": 3e-2, "batch_size": 8, "test_examples": 200,
              "start": "mixed", "bf16_autocast": "auto"},
    "full": {"gamma": PAPER_GAMMAS, "steps": 300, "lr": 1e-2, "batch_size": 8, "test_examples": 0, "start": "init"},
    "paper": {"gamma": PAPER_GAMMAS, "steps": 2000, "lr": 1e-2, "batch_size": 8, "schedule": "linear",
              "grad_clip": 1.0, "weight_decay": 0.0, "max_length": 128, "test_examples": 0, "start": "target",
              "train_seeds": [1, 10, 100], "f1_threshold": 0.98, "selection": "paper", "patience": 0,
              "distance_norm": "none", "bf16_autocast": "off"},
    "cpu": {"gamma": [0.0, 1e-2], "steps": 400, "lr": 1e-2, "batch_size": 8, "schedule": "constant",
            "grad_clip": 1.0, "test_examples": 300, "start": "target", "train_seeds": None, "f1_threshold": 0.9,
            "within": 0.02, "selection": "softscope", "patience": 3, "eval_every": 25, "dev_examples": 200,
            "distance_norm": "none"},
}


@dataclass
class WaywardConfig(TrainConfig, ExecutorOptions):
    """A γ sweep over target texts: train, project (Euclidean), score prompt-F1, accuracy and distance."""

    targets: list[str] | None = option(None, "target files: JSON {name: text} or [texts], or .txt with one per line "
                                        "(bare names are looked up in <data-dir>/targets/)")
    target: list[str] | None = option(None, "target texts given directly (repeat --target for several)")
    gamma: list[float] = option(PAPER_GAMMAS, "γ values of the distance term (0 = plain prompt tuning)", ge=0)
    f1_threshold: float = option(0.9, "prompt-F1 a projection must reach to count as reading as the target", gt=0, le=1)
    within: float = option(0.02, "accuracy margin to the reference prompt that counts as 'no loss' (0.02 = 2 points); "
                            "with per-example scores it is claimed only when the whole 95% paired interval is inside",
                      ge=0, le=1)
    protocol: str = option("custom", "paper (the authors' released settings), cpu (early-stopped test of the claim), "
                                "quick (16-step subset), full (paper targets/γ, softscope training) or custom; a "
                                "preset fixes the targets and training settings",
                           choices=(*PROTOCOLS, "custom"))
    train_seeds: list[int] | None = option(None, "train seeds (data order; init for --start init): one prompt per seed "
                                            "and γ, accuracy and F1 averaged over seeds (default: --seed)")
    selection: str = option("softscope", "softscope (most accurate prompt with F1 >= threshold, drop vs γ = 0) or paper "
                                    "(the authors': γ by seed-mean accuracy, first with F1 > threshold, else the most "
                                    "accurate; drop vs the best accuracy)",
                            choices=("softscope", "paper"))
    distance_norm: str = option("none", "none (Σ‖p − e(t)‖²/n, the paper's) or embedding (divided by the mean squared norm "
                                   "of the input embeddings, so one γ weighs the same on models with other scales)",
                                choices=("none", "embedding"))
    patience: int = option(0, "early stopping: end a prompt's training once its dev accuracy has not improved for this many "
                         "evaluations, keep its best-dev prompt (0 = train all --steps, keep the last)", ge=0)
    eval_every: int = option(25, "steps between dev evaluations when --patience > 0", ge=1)
    dev_examples: int = option(200, "dev examples for early stopping (the task's dev split, else held out of train)", ge=1)
    bootstrap: int = option(N_BOOT, "paired bootstrap resamples for the drop's 95% interval (0 = point estimates only)",
                       ge=0)
    baseline_min: float = option(0.0, "the accuracy the γ = 0 prompt must reach for a target to count (0 = no check)",
                            ge=0, le=1)
    max_targets: int | None = option(None, "use only the first N targets", ge=1)
    test_examples: int = option(500, "fixed seeded test subset for accuracy (0 = whole test set)", ge=0)
    template: str = option("wayward", "wayward (the paper's template for built-in tasks) or task (the task's default)",
                           choices=("wayward", "task"))
    start: str = option("init", "init (every γ from --init), target (every γ from e(t)) or mixed (γ = 0 from --init, "
                           "γ > 0 from e(t))",
                        choices=("init", "target", "mixed"))
    batched: bool = option(True, "train all γ of a target in one batched pass (training.train_many) instead of one by one")
    eval_bf16: bool = option(False, "score accuracy under bf16 autocast too (default: float32 scoring even when "
                               "--bf16-autocast trains in mixed precision)")

    def __post_init__(self) -> None:
        for k, v in PROTOCOLS.get(self.protocol, {}).items():
            setattr(self, k, list(v) if isinstance(v, list) else v)
        key = re.sub(r"[-_ ]", "", self.task.strip().lower())
        if self.protocol == "paper":
            if key in PAPER_LONG_TASKS:
                self.batch_size, self.max_length = 4, 256
            if self.label_words is None and key in PAPER_LABEL_WORDS:  # their verbalizer, unless you pass one
                self.label_words = list(PAPER_LABEL_WORDS[key])
        try:
            self.gamma = [float(g) for g in self.gamma]
        except ValueError:
            raise SoftscopeError(f"--gamma {self.gamma}: give numbers separated by commas, e.g. 0,1e-3,1e-2") from None
        if not self.gamma:
            raise SoftscopeError("--gamma needs one or more values >= 0")
        self.coerce()
        validate(self)
        if 0.0 not in self.gamma:
            raise SoftscopeError("--gamma must include 0: the accuracy drop is measured against the γ = 0 prompt")
        self.gamma = sorted(set(self.gamma))
        if isinstance(self.target, str):
            self.target = [self.target]
        if self.train_seeds is not None:
            try:
                self.train_seeds = list(dict.fromkeys(int(s) for s in self.train_seeds))
            except ValueError:
                raise SoftscopeError(f"--train-seeds {self.train_seeds}: give integers, e.g. 1,10,100") from None
            if not self.train_seeds:
                raise SoftscopeError("--train-seeds needs one or more seeds")
        super().__post_init__()
        ExecutorOptions.__post_init__(self)

    @property
    def seeds(self) -> list[int]:
        """The train seeds this sweep runs (one prompt per seed and γ)."""
        return list(self.train_seeds) if self.train_seeds else [self.seed]


# ---- targets ---------------------------------------------------------------------------------------------
def _targets_dir(cfg: WaywardConfig) -> Path | None:
    d = data_dir(cfg.data_dir)
    return d / "targets" if d is not None and (d / "targets").is_dir() else None


def read_targets(path: str | Path, base: Path | None = None) -> list[tuple[str, str]]:
    """(name, text) pairs from a JSON object/list or a text file (one target per line); names get the file stem."""
    p = Path(path).expanduser()
    if not p.exists() and base is not None and (base / p).exists():
        p = base / p
    if not p.exists():
        raise SoftscopeError(f"target file {path} not found: pass a path or a name in {base or '<data-dir>/targets'}")
    raw = read_text_file(p, "target file")
    if p.suffix == ".json":
        data = read_json_file(p, "target file")
        if not isinstance(data, (dict, list)):
            raise SoftscopeError(f"target file {p} must hold a JSON object {{name: text}} or a list of texts")
        items = list(data.items()) if isinstance(data, dict) else [(f"{i:03d}", t) for i, t in enumerate(data)]
    else:
        items = [(f"{i:03d}", line.strip()) for i, line in enumerate(raw.splitlines()) if line.strip()]
    return [(f"{p.stem}/{k}", str(v)) for k, v in items]


def protocol_targets(cfg: WaywardConfig, task_name: str) -> list[tuple[str, str]]:
    """The targets a preset prescribes (see PROTOCOLS), read from <data-dir>/targets/."""
    base = _targets_dir(cfg)
    if base is None:
        raise SoftscopeError("--protocol needs the targets/ folder of the shared data: pass --data-dir")
    natural = read_targets(base / "natural_prompts.json")
    if cfg.protocol in ("quick", "cpu"):  # short and long alternate, so a cut-short sweep still spans the length axis
        picked = []
        for nat, n in zip(natural[::8][:4], (4, 7, 14, 28)):
            picked += read_targets(base / f"pile_n{n}.json")[:1] + [nat]
        if cfg.protocol == "cpu":  # quick's 4 shortest for SmolLM2 (4, 8, 12, 15 tokens), shortest first
            return [picked[i] for i in (0, 2, 7, 5)]
        return picked
    key = re.sub(r"[-_ ]", "", task_name.lower())
    good = [(k, t) for k, t in read_targets(base / "good_prompts.json")
            if re.sub(r"[-_ ]", "", k.split("/", 1)[1].rsplit("_", 1)[0].lower()) == key]
    return natural + good


def load_targets(cfg: WaywardConfig, task_name: str) -> list[tuple[str, str]]:
    """Targets from --protocol, --targets files and --target texts, in that order, deduplicated by name."""
    out: list[tuple[str, str]] = []
    if cfg.protocol != "custom":
        if cfg.targets or cfg.target:
            raise SoftscopeError("--protocol picks its own targets: drop --targets/--target or use --protocol custom")
        out = protocol_targets(cfg, task_name)
    base = _targets_dir(cfg)
    for f in cfg.targets or []:
        out += read_targets(f, base)
    for i, t in enumerate(cfg.target or []):
        out.append((f"text/{i:03d}", t))
    seen, uniq = set(), []
    for name, text in out:
        if name not in seen and text.strip():
            seen.add(name)
            uniq.append((name, text))
    if not uniq:
        raise SoftscopeError("no target texts: pass --targets FILE, --target TEXT or --protocol quick")
    return uniq[: cfg.max_targets] if cfg.max_targets else uniq


# ---- the objective and the readings -----------------------------------------------------------------------
def target_embeddings(adapter: ModelAdapter, text: str) -> tuple[list[int], torch.Tensor]:
    """Token ids of t (no special tokens) and their input embeddings e(t) [n, d] (with any embedding scale)."""
    return text_embeddings(adapter, text)


def distance(P: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
    """Σ_i ‖p_i − e(t_i)‖² / n for P [n, d] (scalar) or [K, n, d] (one value per prompt)."""
    return ((P - e_t) ** 2).sum(-1).mean(-1)


@torch.no_grad()
def embedding_mean_sq_norm(adapter: ModelAdapter, chunk: int = 32768) -> float:
    """Mean over the whole vocabulary of ‖e(v)‖² (embedding scale applied): the unit of `--distance-norm embedding`.

    Gemma multiplies its embeddings by √d, so its raw distances are ~d times larger than an unscaled model's for
    the same relative displacement; dividing by this mean makes the term scale-free (unchanged if every embedding
    and the prompt are multiplied by the same factor), so one γ weighs the same on models of other scales.
    """
    E = token_embeddings(adapter)
    total = sum(float(E[i:i + chunk].float().pow(2).sum()) for i in range(0, E.shape[0], chunk))
    return total / E.shape[0]


def distance_term(gamma: float | list[float], e_t: torch.Tensor, scale: float = 1.0) -> LossTerm:
    """The γ-weighted distance (divided by `scale`, see embedding_mean_sq_norm) as a training loss term; a list of
    γ gives one weight per prompt of a batch."""
    g = torch.as_tensor(gamma, dtype=torch.float32, device=e_t.device) / scale
    return LossTerm("gamma_distance", lambda P: g * distance(P, e_t))


def reading(adapter: ModelAdapter, P: torch.Tensor, text: str, ids: list[int]) -> dict:
    """Euclidean projection of P, its prompt-F1 against the target, token matches and the distance."""
    proj = project(adapter, P, "l2", top_k=1)
    e_t = token_embeddings(adapter).detach().float()[ids].to(P.device)
    return {"projection": proj.text, "projection_ids": proj.ids, "f1": word_f1(proj.text, text),
            "token_match": sum(a == b for a, b in zip(proj.ids, ids)) / len(ids),
            "distance": float(distance(P.float().to(e_t.device), e_t))}


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("/", "__"))[:120]


# ---- the sweep ---------------------------------------------------------------------------------------------
def _task_for(cfg: WaywardConfig):
    key = re.sub(r"[-_ ]", "", cfg.task.strip().lower())
    template = WAYWARD_TEMPLATES.get(key) if cfg.template == "wayward" and key in BUILTIN else None
    return load_task(cfg.task, data_dir=cfg.data_dir, text_column=cfg.text_column, label_column=cfg.label_column,
                     label_words=cfg.label_words, template=template, max_train=cfg.max_train,
                     max_test=cfg.max_test, seed=cfg.seed)


def _train_cfg(cfg: WaywardConfig, n: int, seed: int) -> TrainConfig:
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
class WaywardContext:
    """What every unit of a sweep shares: the model, the task and its splits, the scorer, the distance scale."""

    adapter: ModelAdapter
    task: object
    train_task: object
    dev: list
    test: list
    scorer: Scorer
    scale: float


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


def wayward_setup(cfg: WaywardConfig) -> tuple:
    """Build a unit context from the config alone (what a Ray worker does once, then keeps)."""
    adapter = load_model_for(cfg)
    task = _task_for(cfg)
    train_task, dev = dev_split(task, cfg.dev_examples, cfg.seed) if cfg.patience else (task, [])
    scorer = Scorer(adapter, task, max_length=cfg.max_length, verbalizer=cfg.verbalizer, autocast_bf16=cfg.eval_bf16)
    scale = embedding_mean_sq_norm(adapter) if cfg.distance_norm == "embedding" else 1.0
    return WaywardContext(adapter, task, train_task, dev, task.subset("test", cfg.test_examples or None, cfg.seed),
                          scorer, scale), cfg, None


def wayward_unit(ctx: tuple, unit: Unit) -> list[tuple[dict, torch.Tensor]]:
    """One target × train seed, every γ of it trained together: [(row, prompt)] for the driver to save.

    Depends only on the unit's key and the config (seeded generators), so local and Ray runs give the same rows.
    """
    c, cfg, run = ctx
    adapter, task, scorer, test, scale = c.adapter, c.task, c.scorer, c.test, c.scale
    name, text, seed, todo = unit.args["target"], unit.args["text"], unit.args["seed"], unit.args["gammas"]
    ids, e_t = target_embeddings(adapter, text)
    n = len(ids)
    start_acc = scorer.accuracy(e_t, test, cfg.eval_batch_size)  # e(t) itself, untrained: is t already a prompt?
    tcfg = _train_cfg(cfg, n, seed)
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
    elif cfg.batched and (len(todo) > 1 or run is None):  # on a worker (no run folder) one γ is K = 1
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
    done = {(r["target"], r["gamma"], r.get("seed", cfg.seed)) for r in run.read_jsonl("wayward.jsonl")}
    units = []
    for name, text in targets:
        for seed in cfg.seeds:
            todo = [g for g in cfg.gamma if (name, g, seed) not in done]
            if todo:
                units.append(Unit(f"{name}|seed={seed}", {"target": name, "text": text, "seed": seed, "gammas": todo}))
    if cfg.executor != "local" and not cfg.batched:
        raise SoftscopeError("--no-batched keeps per-γ training folders and runs with --executor local only")
    ctx = WaywardContext(adapter, task, train_task, dev, test, scorer, scale)

    def record(unit: Unit, result: list[tuple[dict, torch.Tensor]]) -> None:
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
        run.append_jsonl("wayward.jsonl", new)  # a unit's finished rows land together: resume never recomputes them

    run_units(units, wayward_unit, setup=wayward_setup, setup_args=(context_config(cfg),), ctx=(ctx, cfg, run.path),
              options=cfg, on_result=record, progress=progress)
    rows = run.read_jsonl("wayward.jsonl")
    summary = summarize(rows, cfg.f1_threshold, cfg.within, cfg.selection, cfg.bootstrap, cfg.baseline_min)
    summary.update(model=adapter.name, task=task.name, protocol=cfg.protocol, steps=cfg.steps, lr=cfg.lr,
                   gamma=cfg.gamma, train_seeds=cfg.seeds, test_examples=len(test), dev_examples=len(dev),
                   batched=cfg.batched, distance_norm=cfg.distance_norm, embedding_mean_sq_norm=mean_sq,
                   compute_seconds=sum(r.get("seconds", 0.0) for r in rows),
                   wall_seconds_this_call=time.time() - t0)
    run.write_json("wayward_summary.json", summary)
    plot(rows, run.path, cfg.f1_threshold, title=f"{adapter.name} · {task.name}")
    return summary


# ---- summary, plots, comparison ------------------------------------------------------------------------
def seed_means(rows: list[dict]) -> list[dict]:
    """One row per (target, γ): accuracy, prompt-F1 and distances averaged over train seeds (the authors average
    seeds before selecting a γ) and `scores`, the per-test-example correctness averaged over seeds (when every
    seed's row carries it: sweeps from before it was recorded have none)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["target"], r["gamma"]), []).append(r)
    out = []
    for rs in groups.values():
        m = dict(rs[0])
        m.pop("correct", None)
        m["seeds"] = [r.get("seed") for r in rs]
        for k in ("accuracy", "f1", "distance"):
            m[k] = statistics.fmean(r[k] for r in rs)
        cs = [r.get("correct") for r in rs]
        if all(cs) and len({len(c) for c in cs}) == 1:
            m["scores"] = [sum(c[i] == "1" for c in cs) / len(cs) for i in range(len(cs[0]))]
        out.append(m)
    return out


def select(mine: list[dict], threshold: float, selection: str) -> tuple[dict | None, dict | None, bool]:
    """(chosen prompt, reference prompt, reached) for one target's seed-mean rows, one per γ.

    softscope: the most accurate prompt with F1 >= threshold (ties: higher F1), against the γ = 0 prompt; none
    when no prompt reaches the threshold. paper (main.py as released): sort the γ by accuracy, best first (a
    stable sort: ties keep γ order), take the first whose F1 is strictly above the threshold, or the most
    accurate one when none is (`reached` False), against the most accurate prompt of all γ.
    """
    if selection == "paper":
        ranked = sorted(mine, key=lambda r: r["accuracy"], reverse=True)
        hit = next((r for r in ranked if r["f1"] > threshold), None)
        return (hit or ranked[0]), ranked[0], hit is not None
    base = next((r for r in mine if r["gamma"] == 0), None)
    ok = [r for r in mine if r["f1"] >= threshold]
    return (max(ok, key=lambda r: (r["accuracy"], r["f1"])) if ok else None), base, bool(ok)


def per_target(rows: list[dict], threshold: float, within: float, selection: str = "softscope",
               n_boot: int = N_BOOT, baseline_min: float = 0.0) -> list[dict]:
    """Per target: the γ = 0 accuracy, the accuracy of e(t) untrained, the prompt `select` chooses and its drop
    against the reference, with a 95% paired bootstrap interval over test examples when per-example scores exist.
    `within` is claimed only when the whole interval is at most the margin (`within_basis` "ci95"); without
    scores it falls back to the point estimate ("point"). Targets whose γ = 0 prompt is below `baseline_min`
    are marked (`baseline_ok` False) and never count as within."""
    agg = seed_means(rows)
    out = []
    for name in dict.fromkeys(r["target"] for r in agg):
        mine = [r for r in agg if r["target"] == name]
        base = next((r for r in mine if r["gamma"] == 0), None)
        if base is None:
            continue
        best, ref, reached = select(mine, threshold, selection)
        drop = ci = None
        if best is not None:
            drop = ref["accuracy"] - best["accuracy"]
            if best is ref:
                ci = [0.0, 0.0]
            elif n_boot and "scores" in best and "scores" in ref:
                ci = paired_bootstrap(ref["scores"], best["scores"], n_boot=n_boot, seed=0)["ci95"]
        baseline_ok = base["accuracy"] >= baseline_min
        bound = ci[1] if ci is not None else drop
        out.append({"target": name, "n_tokens": mine[0]["n_tokens"], "acc_gamma0": base["accuracy"],
                    "acc_start": mine[0].get("start_accuracy"), "seeds": len(base["seeds"]),
                    "reference_gamma": ref["gamma"] if ref else None, "reached": reached,
                    "best_gamma": best["gamma"] if best else None, "best_f1": best["f1"] if best else None,
                    "best_accuracy": best["accuracy"] if best else None, "drop": drop, "drop_ci95": ci,
                    "drop_vs_gamma0": base["accuracy"] - best["accuracy"] if best else None,
                    "within": bool(reached and baseline_ok and drop is not None and bound <= within + 1e-9),
                    "within_basis": "ci95" if ci is not None else "point",
                    "significant_drop": ci is not None and ci[0] > 0, "baseline_ok": baseline_ok,
                    "best_steps": best.get("steps") if best else None, "gamma0_steps": base.get("steps"),
                    "max_f1": max(r["f1"] for r in mine)})
    return out


def summarize(rows: list[dict], threshold: float = 0.9, within: float = 0.02, selection: str = "softscope",
              n_boot: int = N_BOOT, baseline_min: float = 0.0) -> dict:
    """The headline figures: share of targets reached (F1 over the threshold), mean/median drop, share within the
    margin (by the interval when there is one), targets below the baseline accuracy, per-γ means."""
    tg = per_target(rows, threshold, within, selection, n_boot, baseline_min)
    reached = [t for t in tg if t["reached"]]
    drops = [t["drop"] for t in reached]
    by_gamma = {}
    for g in sorted({r["gamma"] for r in rows}):
        rs = [r for r in rows if r["gamma"] == g]
        by_gamma[f"{g:g}"] = {"rows": len(rs), "mean_accuracy": statistics.fmean(r["accuracy"] for r in rs),
                              "mean_f1": statistics.fmean(r["f1"] for r in rs),
                              "share_f1_at_threshold": sum(r["f1"] >= threshold for r in rs) / len(rs),
                              "mean_distance": statistics.fmean(r["distance"] for r in rs)}
    return {"f1_threshold": threshold, "within": within, "selection": selection, "targets": len(tg),
            "rows": len(rows), "share_reached": len(reached) / len(tg) if tg else None,
            "mean_drop": statistics.fmean(drops) if drops else None,
            "median_drop": statistics.median(drops) if drops else None,
            "share_within": sum(t["within"] for t in tg) / len(tg) if tg else None,
            "share_within_of_reached": sum(t["within"] for t in reached) / len(reached) if reached else None,
            "significant_drops": sum(t["significant_drop"] for t in tg),
            "below_baseline": [t["target"] for t in tg if not t["baseline_ok"]], "baseline_min": baseline_min,
            "mean_acc_gamma0": statistics.fmean(t["acc_gamma0"] for t in tg) if tg else None,
            "by_gamma": by_gamma, "per_target": tg}


def plot(rows: list[dict], out: Path, threshold: float, title: str = "") -> list[Path]:
    """f1_vs_accuracy.png (one colour per γ) and drop_vs_length.png (accuracy drop vs prompt length)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return []
    gammas = sorted({r["gamma"] for r in rows})
    cmap = plt.get_cmap("viridis", max(len(gammas), 2))
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, g in enumerate(gammas):
        rs = [r for r in rows if r["gamma"] == g]
        ax.scatter([r["f1"] for r in rs], [r["accuracy"] for r in rs], color=cmap(i), label=f"γ={g:g}", s=22)
    ax.axvline(threshold, color="grey", ls="--", lw=0.8)
    ax.set(xlabel="prompt-F1 of the Euclidean projection vs target", ylabel="task accuracy", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    p1 = save_figure(fig, out / "f1_vs_accuracy.png")

    means = seed_means(rows)
    acc0 = {r["target"]: r["accuracy"] for r in means if r["gamma"] == 0}
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, g in enumerate(gammas):
        rs = [r for r in means if r["gamma"] == g and g > 0 and r["target"] in acc0]
        if rs:
            ax.scatter([r["n_tokens"] for r in rs], [acc0[r["target"]] - r["accuracy"] for r in rs], color=cmap(i),
                       label=f"γ={g:g}", s=22, alpha=0.8)
    best = [t for t in per_target(rows, threshold, 0.02, n_boot=0) if t["reached"] and t["drop"] is not None]
    if best:
        ax.scatter([t["n_tokens"] for t in best], [t["drop"] for t in best], marker="*", s=90, color="crimson",
                   label=f"best with F1≥{threshold:g}")
    _length_axis(ax, "accuracy drop vs γ = 0", title)
    fig.tight_layout()
    return [p1, save_figure(fig, out / "drop_vs_length.png")]


def _length_axis(ax, ylabel: str, title: str) -> None:
    """Log prompt-length x axis with plain tick labels (4, 10, 40), the 2-point margin, and a legend if any."""
    import matplotlib.ticker

    ax.axhline(0.02, color="grey", ls="--", lw=0.8)
    ax.set(xscale="log", xlabel="prompt length n (tokens of the target)", ylabel=ylabel, title=title)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _sweep(d: str | Path) -> tuple[list[dict], dict, dict]:
    """A finished (or partly finished) sweep's rows, its per_target settings (threshold, margin, selection rule,
    resamples, baseline; defaults for sweeps older than a setting) and its whole config.json."""
    cfg = read_json(Path(d) / "config.json")
    rows = read_jsonl(Path(d) / "wayward.jsonl")
    if not rows:
        raise SoftscopeError(f"{d} has no wayward.jsonl rows yet: run or resume the sweep first")
    c = cfg["config"]
    opts = {"threshold": c["f1_threshold"], "within": c["within"], "selection": c.get("selection", "softscope"),
            "n_boot": c.get("bootstrap", N_BOOT), "baseline_min": c.get("baseline_min", 0.0)}
    return rows, opts, cfg


def compare(run_dirs: list[str | Path]) -> list[dict]:
    """One row per sweep (model × task): the headline figures side by side, recomputed from wayward.jsonl."""
    out = []
    for d in run_dirs:
        rows, opts, cfg = _sweep(d)
        s = summarize(rows, **opts)
        info = cfg.get("model_info", {})
        out.append({"run": str(d), "model": rows[0]["model"], "task": rows[0]["task"],
                    "layers": info.get("layers"), "width": info.get("width"),
                    "embedding_mean_sq_norm": info.get("embedding_mean_sq_norm"),
                    "distance_norm": cfg["config"].get("distance_norm", "none"),
                    "targets": s["targets"], "rows": s["rows"], "mean_acc_gamma0": s["mean_acc_gamma0"],
                    "share_reached": s["share_reached"], "share_within": s["share_within"],
                    "mean_drop": s["mean_drop"], "median_drop": s["median_drop"],
                    "compute_seconds": sum(r.get("seconds", 0.0) for r in rows)})
    return out


def compare_table(rows: list[dict]) -> str:
    """A Markdown table of `compare` rows."""
    def f(x, pct=False, sign=False):
        return "–" if x is None else (f"{100 * x:.1f}%" if pct else f"{x:+.3f}" if sign else f"{x:.3f}")

    lines = ["| model | layers × width | task | targets | acc γ=0 | F1≥thr reached | within margin | mean drop | "
             "median drop | compute s |", "|---" * 10 + "|"]
    for r in rows:
        shape = f"{r['layers']} × {r['width']}" if r.get("layers") else "–"
        lines.append(f"| {r['model']} | {shape} | {r['task']} | {r['targets']} | {f(r['mean_acc_gamma0'])} | "
                     f"{f(r['share_reached'], True)} | {f(r['share_within'], True)} | {f(r['mean_drop'], sign=True)} | "
                     f"{f(r['median_drop'], sign=True)} | {r['compute_seconds']:.0f} |")
    if len({r["model"] for r in rows}) > 1:
        lines.append("\nModels of different families also differ in tokenizer, training data and embedding scale, "
                     "not only in size: read a size trend only within one family.")
        raw = {r["model"]: r["embedding_mean_sq_norm"] for r in rows
               if r.get("distance_norm", "none") == "none" and r.get("embedding_mean_sq_norm")}
        if len(raw) > 1 and max(raw.values()) > 2 * min(raw.values()):
            lines.append("Raw distances (--distance-norm none) on models whose mean squared embedding norms differ ("
                         + ", ".join(f"{m} {v:.3g}" for m, v in raw.items()) + "): the same γ does not weigh the "
                         "same; rerun with --distance-norm embedding to compare γ across these models.")
    return "\n".join(lines)


def target_table(run_dirs: list[str | Path]) -> str:
    """A Markdown table with one row per target of each sweep: accuracy / prompt-F1 at every γ, then the best
    prompt with F1 ≥ threshold, its drop vs γ = 0 and whether that is within the margin (the per-target detail
    behind `compare`)."""
    runs = [_sweep(d) for d in run_dirs]
    gammas = sorted({r["gamma"] for rows, *_ in runs for r in rows})
    lines = ["| model | task | target (tokens) | e(t) untrained | " + " | ".join(f"γ={g:g}" for g in gammas)
             + " | chosen (F1 over thr) | drop [95% CI] | within |", "|---" * (8 + len(gammas)) + "|"]
    for rows, opts, _ in runs:
        for t in per_target(rows, **opts):
            mine = {r["gamma"]: r for r in seed_means(rows) if r["target"] == t["target"]}
            cells = ["–" if g not in mine else f"{mine[g]['accuracy']:.3f} / {mine[g]['f1']:.2f}" for g in gammas]
            best = "–" if t["best_gamma"] is None else (f"γ={t['best_gamma']:g}: {t['best_accuracy']:.3f}"
                                                        + ("" if t["reached"] else " (F1 not reached)"))
            drop = "–" if t["drop"] is None else f"{t['drop']:+.3f}"
            if t["drop_ci95"] is not None:
                drop += f" [{t['drop_ci95'][0]:+.3f}, {t['drop_ci95'][1]:+.3f}]"
            start = "–" if t["acc_start"] is None else f"{t['acc_start']:.3f}"
            first = next(iter(mine.values()))
            lines.append(f"| {first['model']} | {first['task']} | {t['target']} ({t['n_tokens']}) | {start} | "
                         + " | ".join(cells) + f" | {best} | {drop} | {'yes' if t['within'] else 'no'} |")
    return "\n".join(lines)


def compare_plot(run_dirs: list[str | Path], path: str | Path) -> Path:
    """compare_drop_vs_length.png: each sweep's per-target drop (best F1 ≥ threshold prompt vs γ = 0) against the
    prompt length, one colour per model × task, so the model-size axis is read off one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    markers = "osD^v<>P"
    for i, d in enumerate(run_dirs):
        rows, opts, _ = _sweep(d)
        tg = [t for t in per_target(rows, **{**opts, "n_boot": 0}) if t["reached"] and t["drop"] is not None]
        if tg:
            ax.scatter([t["n_tokens"] for t in tg], [t["drop"] for t in tg], marker=markers[i % len(markers)], s=36,
                       alpha=0.8, label=f"{rows[0]['model']} · {rows[0]['task']}")
    ax.axhline(0.0, color="grey", lw=0.5)
    _length_axis(ax, "accuracy drop of the best F1≥thr prompt vs γ = 0", "waywardness by model and task")
    fig.tight_layout()
    return save_figure(fig, path)

