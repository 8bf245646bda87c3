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
`--protocol quick` is a CPU-sized subset (see PROTOCOLS); `--protocol full` is the paper's grid.

Outputs (run dir): config.json, wayward.jsonl (one row per target × γ, appended as each finishes, so a killed
sweep resumes where it stopped), prompts/*.safetensors, wayward_summary.json, f1_vs_accuracy.png,
drop_vs_length.png. `compare` tabulates several sweeps (e.g. two models) side by side.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..engine.config import TrainConfig, h, subconfig, validate
from ..engine.errors import SoftscopeError
from ..engine.metrics import word_f1
from ..engine.models import ModelAdapter, choose_autocast, text_embeddings, token_embeddings
from ..engine.projection import project
from ..engine.prompts import SoftPrompt
from ..engine.runs import append_jsonl, read_json, read_jsonl, save_figure, write_config, write_json
from ..engine.scoring import Scorer
from ..engine.training import LossTerm, init_prompt, load_model_for, train, train_many

PAPER_GAMMAS = [0.0, 1e-4, 5e-4, 1e-3, 3e-3, 5e-3, 1e-2, 3e-2]

# Presets. quick: sized for 2 free CPU cores (< 90 min for SST-2 and AG News × both packaged models): 8 targets —
# 4 task definitions spread over natural_prompts.json (every 8th) alternating with one Pile sentence each from
# pile_n{4,7,14,28} for the length axis — 4 γ, 16 steps at lr 3e-2 (batch 8) trained under bf16 autocast where the
# CPU has native bf16 ("auto": 1.6× faster on AVX512-BF16, ~25× slower where emulated, so float32 there; the
# distance term and Adam stay float32), accuracy
# scored in float32 on a fixed seeded 200-example test subset. The γ = 0
# baseline starts from vocabulary embeddings (plain prompt tuning) and the γ > 0 prompts start at e(t): in 16 steps
# Adam moves a coordinate at most Σ lr ≈ 0.24, too little to carry a vocabulary start into the target's
# nearest-neighbour cells (measured on SmolLM2/SST-2: distance 18.3 → 16.9 at γ = 3e-2, F1 0). So the short sweep
# asks: does a prompt held at t learn the task as well as a free one?
# full: the paper's grid — 32 unrelated definitions + the task's 5 true descriptions, 8 γ, 300 steps, whole test set.
PROTOCOLS: dict[str, dict] = {
    "quick": {"gamma": [0.0, 1e-3, 1e-2, 3e-2], "steps": 16, "lr": 3e-2, "batch_size": 8, "test_examples": 200,
              "start": "mixed", "bf16_autocast": "auto"},
    "full": {"gamma": PAPER_GAMMAS, "steps": 300, "lr": 1e-2, "batch_size": 8, "test_examples": 0, "start": "init"},
}


@dataclass
class WaywardConfig(TrainConfig):
    """A γ sweep over target texts: train, project (Euclidean), score prompt-F1, accuracy and distance."""

    targets: list[str] | None = h(None, "target files: JSON {name: text} or [texts], or .txt with one per line "
                                        "(bare names are looked up in <data-dir>/targets/)")
    target: list[str] | None = h(None, "target texts given directly (repeat --target for several)")
    gamma: list[float] = h(PAPER_GAMMAS, "γ values of the distance term (0 = plain prompt tuning)", ge=0)
    f1_threshold: float = h(0.9, "prompt-F1 a projection must reach to count as reading as the target", gt=0, le=1)
    within: float = h(0.02, "accuracy margin to the γ = 0 prompt that counts as 'no loss' (0.02 = 2 points)",
                      ge=0, le=1)
    protocol: str = h("custom", "quick (CPU-sized subset), full (paper grid) or custom; a preset fixes the targets, "
                                "γ, steps, lr, batch size, test subset, start and precision")
    max_targets: int | None = h(None, "use only the first N targets", ge=1)
    test_examples: int = h(500, "fixed seeded test subset for accuracy (0 = whole test set)", ge=0)
    template: str = h("wayward", "wayward (the paper's template for built-in tasks) or task (the task's default)")
    start: str = h("init", "init (every γ from --init), target (every γ from e(t)) or mixed (γ = 0 from --init, "
                           "γ > 0 from e(t))")
    batched: bool = h(True, "train all γ of a target in one batched pass (training.train_many) instead of one by one")
    eval_bf16: bool = h(False, "score accuracy under bf16 autocast too (default: float32 scoring even when "
                               "--bf16-autocast trains in mixed precision)")

    def __post_init__(self) -> None:
        if self.protocol not in ("quick", "full", "custom"):
            raise SoftscopeError(f"--protocol {self.protocol!r}: use quick, full or custom")
        for k, v in PROTOCOLS.get(self.protocol, {}).items():
            setattr(self, k, list(v) if isinstance(v, list) else v)
        try:
            self.gamma = [float(g) for g in self.gamma]
        except ValueError:
            raise SoftscopeError(f"--gamma {self.gamma}: give numbers separated by commas, e.g. 0,1e-3,1e-2") from None
        if not self.gamma:
            raise SoftscopeError("--gamma needs one or more values >= 0")
        validate(self)
        if 0.0 not in self.gamma:
            raise SoftscopeError("--gamma must include 0: the accuracy drop is measured against the γ = 0 prompt")
        self.gamma = sorted(set(self.gamma))
        if self.template not in ("wayward", "task"):
            raise SoftscopeError(f"--template {self.template!r}: use wayward or task")
        if self.start not in ("init", "target", "mixed"):
            raise SoftscopeError(f"--start {self.start!r}: use init, target or mixed")
        if isinstance(self.target, str):
            self.target = [self.target]
        super().__post_init__()


# ---- targets ---------------------------------------------------------------------------------------------
def _targets_dir(cfg: WaywardConfig) -> Path | None:
    from ..engine.tasks import data_dir

    d = data_dir(cfg.data_dir)
    return d / "targets" if d is not None and (d / "targets").is_dir() else None


def read_targets(path: str | Path, base: Path | None = None) -> list[tuple[str, str]]:
    """(name, text) pairs from a JSON object/list or a text file (one target per line); names get the file stem."""
    p = Path(path).expanduser()
    if not p.exists() and base is not None and (base / p).exists():
        p = base / p
    if not p.is_file():
        raise SoftscopeError(f"target file {path} not found: pass a path or a name in {base or '<data-dir>/targets'}")
    raw = p.read_text(encoding="utf-8")
    if p.suffix == ".json":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise SoftscopeError(f"{p} is not valid JSON ({e.msg} at line {e.lineno})") from None
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
    if cfg.protocol == "quick":  # short and long alternate, so a cut-short sweep still spans the length axis
        picked = []
        for nat, n in zip(natural[::8][:4], (4, 7, 14, 28)):
            picked += read_targets(base / f"pile_n{n}.json")[:1] + [nat]
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


def distance_term(gamma: float | list[float], e_t: torch.Tensor) -> LossTerm:
    """The γ-weighted distance as a training loss term (a list of γ gives one weight per prompt of a batch)."""
    g = torch.as_tensor(gamma, dtype=torch.float32, device=e_t.device)
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
    from ..engine.tasks import BUILTIN, WAYWARD_TEMPLATES, load_task

    key = re.sub(r"[-_ ]", "", cfg.task.strip().lower())
    template = WAYWARD_TEMPLATES.get(key) if cfg.template == "wayward" and key in BUILTIN else None
    return load_task(cfg.task, data_dir=cfg.data_dir, text_column=cfg.text_column, label_column=cfg.label_column,
                     label_words=cfg.label_words, template=template, max_train=cfg.max_train,
                     max_test=cfg.max_test, seed=cfg.seed)


def _train_cfg(cfg: WaywardConfig, n: int) -> TrainConfig:
    # train() evaluates at step 0 and at the end on `eval_examples`: keep that tiny, we evaluate once ourselves
    return subconfig(TrainConfig, cfg, tokens=n, final_eval="none", eval_examples=8, checkpoint_every=max(cfg.steps, 1))


def _start(cfg: WaywardConfig, adapter: ModelAdapter, n: int, e_t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Initial prompt for one γ: e(t) itself, or --init drawn from a generator seeded by --seed (same for all γ)."""
    if cfg.start == "target" or (cfg.start == "mixed" and gamma > 0):
        return e_t.detach().float().cpu().clone()
    return init_prompt(adapter, n, cfg.init, torch.Generator().manual_seed(cfg.seed), cfg.init_text)


def run_wayward(cfg: WaywardConfig, out: str | Path, *, resume: bool = False, adapter: ModelAdapter | None = None,
                task=None, progress: bool = True) -> dict:
    """Run (or continue) a sweep into `out`; returns the summary (also written as wayward_summary.json)."""
    run = Path(out)
    rows_path = run / "wayward.jsonl"
    if (run / "config.json").exists() and not resume:
        raise SoftscopeError(f"{run} already holds a wayward sweep: pass --resume to continue it or choose another --out")
    if resume and not (run / "config.json").exists():
        raise SoftscopeError(f"nothing to resume in {run} (no config.json): run without --resume")
    t0 = time.time()
    adapter = adapter or load_model_for(cfg)
    task = task or _task_for(cfg)
    targets = load_targets(cfg, task.name)
    test = task.subset("test", cfg.test_examples or None, cfg.seed)
    scorer = Scorer(adapter, task, max_length=cfg.max_length, verbalizer=cfg.verbalizer, autocast_bf16=cfg.eval_bf16)
    if resume:  # rows must stay comparable: only --max-targets may change (to extend a sweep)
        saved = read_json(run / "config.json")["config"]
        now = json.loads(json.dumps(dataclasses.asdict(cfg)))
        changed = sorted(k for k in now if k != "max_targets" and saved.get(k) != now[k])
        if changed:
            raise SoftscopeError(f"--resume with other settings than the sweep in {run} ({', '.join(changed)}): "
                                 "rerun with the same options or choose another --out")
    if not resume or saved.get("max_targets") != cfg.max_targets:
        write_config(run, "wayward", cfg, task=task.to_dict(),
                     compute=choose_autocast(cfg.bf16_autocast, adapter.device, announce=progress)[1],
                     targets=dict(targets), test_subset_size=len(test),
                     model_info={"name": adapter.name, "layers": adapter.n_layers, "width": adapter.width})
    done = {(r["target"], r["gamma"]) for r in read_jsonl(rows_path)}
    bar = tqdm(targets, desc="targets", disable=not progress)
    for name, text in bar:
        todo = [g for g in cfg.gamma if (name, g) not in done]
        if not todo:
            continue
        ids, e_t = target_embeddings(adapter, text)
        n = len(ids)
        tcfg = _train_cfg(cfg, n)
        starts = {g: _start(cfg, adapter, n, e_t, g) for g in todo}
        ts = time.time()
        if cfg.batched and len(todo) > 1:
            Ps, metrics = train_many(tcfg, torch.stack([starts[g] for g in todo]), adapter=adapter, task=task,
                                     loss_terms=[distance_term(todo, e_t)], progress=False)
            finals = [(g, Ps[k], metrics[-1]["loss"][k] if metrics else None) for k, g in enumerate(todo)]
        else:
            finals = []
            for g in todo:
                rdir = run / "runs" / safe_name(name) / f"gamma-{g:g}"
                res = train(tcfg, rdir, resume=(rdir / "state.json").exists(), adapter=adapter, task=task,
                            loss_terms=[distance_term(g, e_t)], init=starts[g], progress=False, command="wayward")
                last = [m for m in read_jsonl(rdir / "metrics.jsonl") if m["event"] == "train"]
                finals.append((g, res.prompt.tensor, last[-1]["loss"] if last else None))
        train_seconds = (time.time() - ts) / len(todo)
        new = []
        for g, P, final_loss in finals:
            te = time.time()
            acc = scorer.accuracy(P, test, cfg.eval_batch_size)
            sp = SoftPrompt(tensor=P.float().cpu(), model=adapter.name, task=task.name, template=task.template,
                            label_words=list(task.label_words), classes=list(task.classes), step=cfg.steps,
                            accuracy=acc, extra={"target": name, "target_text": text, "gamma": g, "seed": cfg.seed})
            path = sp.save(run / "prompts" / f"{safe_name(name)}__gamma-{g:g}.safetensors")
            new.append({"target": name, "target_text": text, "n_tokens": n, "gamma": g, "accuracy": acc,
                        **reading(adapter, P.to(adapter.device), text, ids), "final_task_loss": final_loss,
                        "test_examples": len(test), "steps": cfg.steps, "model": adapter.name, "task": task.name,
                        "prompt": str(path.relative_to(run)), "seconds": train_seconds + time.time() - te})
        append_jsonl(rows_path, new)  # a target's finished rows land together: resume never recomputes them
        done |= {(r["target"], r["gamma"]) for r in new}
        bar.set_postfix(target=name.split("/")[-1][:20], best_f1=f"{max(r['f1'] for r in new):.2f}")
    rows = read_jsonl(rows_path)
    summary = summarize(rows, cfg.f1_threshold, cfg.within)
    summary.update(model=adapter.name, task=task.name, protocol=cfg.protocol, steps=cfg.steps, lr=cfg.lr,
                   gamma=cfg.gamma, test_examples=len(test), batched=cfg.batched,
                   compute_seconds=sum(r.get("seconds", 0.0) for r in rows),
                   wall_seconds_this_call=time.time() - t0)
    write_json(run / "wayward_summary.json", summary)
    plot(rows, run, cfg.f1_threshold, title=f"{adapter.name} · {task.name}")
    return summary


# ---- summary, plots, comparison ------------------------------------------------------------------------
def per_target(rows: list[dict], threshold: float, within: float) -> list[dict]:
    """Per target: the γ = 0 accuracy, the most accurate prompt with F1 ≥ threshold, and its accuracy drop."""
    out = []
    for name in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == name]
        base = [r for r in mine if r["gamma"] == 0]
        if not base:
            continue
        acc0 = max(r["accuracy"] for r in base)
        ok = [r for r in mine if r["f1"] >= threshold]
        best = max(ok, key=lambda r: (r["accuracy"], r["f1"])) if ok else None
        drop = acc0 - best["accuracy"] if best else None
        out.append({"target": name, "n_tokens": mine[0]["n_tokens"], "acc_gamma0": acc0,
                    "best_gamma": best["gamma"] if best else None, "best_f1": best["f1"] if best else None,
                    "best_accuracy": best["accuracy"] if best else None, "drop": drop,
                    "within": drop is not None and drop <= within + 1e-9,
                    "max_f1": max(r["f1"] for r in mine)})
    return out


def summarize(rows: list[dict], threshold: float = 0.9, within: float = 0.02) -> dict:
    """The headline figures: share of targets reached (F1 ≥ threshold), mean/median drop, share within margin."""
    tg = per_target(rows, threshold, within)
    reached = [t for t in tg if t["drop"] is not None]
    drops = [t["drop"] for t in reached]
    by_gamma = {}
    for g in sorted({r["gamma"] for r in rows}):
        rs = [r for r in rows if r["gamma"] == g]
        by_gamma[f"{g:g}"] = {"rows": len(rs), "mean_accuracy": statistics.fmean(r["accuracy"] for r in rs),
                              "mean_f1": statistics.fmean(r["f1"] for r in rs),
                              "share_f1_at_threshold": sum(r["f1"] >= threshold for r in rs) / len(rs),
                              "mean_distance": statistics.fmean(r["distance"] for r in rs)}
    return {"f1_threshold": threshold, "within": within, "targets": len(tg), "rows": len(rows),
            "share_reached": len(reached) / len(tg) if tg else None,
            "mean_drop": statistics.fmean(drops) if drops else None,
            "median_drop": statistics.median(drops) if drops else None,
            "share_within": sum(t["within"] for t in tg) / len(tg) if tg else None,
            "share_within_of_reached": sum(t["within"] for t in reached) / len(reached) if reached else None,
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

    acc0 = {r["target"]: r["accuracy"] for r in rows if r["gamma"] == 0}
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, g in enumerate(gammas):
        rs = [r for r in rows if r["gamma"] == g and g > 0 and r["target"] in acc0]
        if rs:
            ax.scatter([r["n_tokens"] for r in rs], [acc0[r["target"]] - r["accuracy"] for r in rs], color=cmap(i),
                       label=f"γ={g:g}", s=22, alpha=0.8)
    best = [t for t in per_target(rows, threshold, 0.02) if t["drop"] is not None]
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


def _sweep(d: str | Path) -> tuple[list[dict], float, float, dict]:
    """A finished (or partly finished) sweep's rows, its F1 threshold and margin, and its whole config.json."""
    cfg = read_json(Path(d) / "config.json")
    rows = read_jsonl(Path(d) / "wayward.jsonl")
    if not rows:
        raise SoftscopeError(f"{d} has no wayward.jsonl rows yet: run or resume the sweep first")
    return rows, cfg["config"]["f1_threshold"], cfg["config"]["within"], cfg


def compare(run_dirs: list[str | Path]) -> list[dict]:
    """One row per sweep (model × task): the headline figures side by side, recomputed from wayward.jsonl."""
    out = []
    for d in run_dirs:
        rows, thr, within, cfg = _sweep(d)
        s = summarize(rows, thr, within)
        out.append({"run": str(d), "model": rows[0]["model"], "task": rows[0]["task"],
                    "layers": cfg.get("model_info", {}).get("layers"), "width": cfg.get("model_info", {}).get("width"),
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
    return "\n".join(lines)


def target_table(run_dirs: list[str | Path]) -> str:
    """A Markdown table with one row per target of each sweep: accuracy / prompt-F1 at every γ, then the best
    prompt with F1 ≥ threshold, its drop vs γ = 0 and whether that is within the margin (the per-target detail
    behind `compare`)."""
    runs = [_sweep(d) for d in run_dirs]
    gammas = sorted({r["gamma"] for rows, *_ in runs for r in rows})
    lines = ["| model | task | target (tokens) | " + " | ".join(f"γ={g:g}" for g in gammas)
             + " | best F1≥thr | drop | within |", "|---" * (6 + len(gammas)) + "|"]
    for rows, thr, within, _ in runs:
        for t in per_target(rows, thr, within):
            mine = {r["gamma"]: r for r in rows if r["target"] == t["target"]}
            cells = ["–" if g not in mine else f"{mine[g]['accuracy']:.3f} / {mine[g]['f1']:.2f}" for g in gammas]
            best = "–" if t["best_gamma"] is None else f"γ={t['best_gamma']:g}: {t['best_accuracy']:.3f}"
            drop = "–" if t["drop"] is None else f"{t['drop']:+.3f}"
            first = next(iter(mine.values()))
            lines.append(f"| {first['model']} | {first['task']} | {t['target']} ({t['n_tokens']}) | "
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
        rows, thr, within, _ = _sweep(d)
        tg = [t for t in per_target(rows, thr, within) if t["drop"] is not None]
        if tg:
            ax.scatter([t["n_tokens"] for t in tg], [t["drop"] for t in tg], marker=markers[i % len(markers)], s=36,
                       alpha=0.8, label=f"{rows[0]['model']} · {rows[0]['task']}")
    ax.axhline(0.0, color="grey", lw=0.5)
    _length_axis(ax, "accuracy drop of the best F1≥thr prompt vs γ = 0", "waywardness by model and task")
    fig.tight_layout()
    return save_figure(fig, path)

