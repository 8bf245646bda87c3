"""InSPEcT: the model writes what its soft prompt means, at every checkpoint of a training run.

Reference: Ramati et al., "Eliciting Textual Descriptions from Representations of Continuous Prompts"
(InSPEcT, Findings of ACL 2024), built on Patchscopes (Ghandeharioun et al., ICML 2024).
Procedure (docs/methods.md §4):

1. source pass: run the model on the soft prompt alone (after BOS if any); keep block ℓ's output at the n
   virtual-token positions, for every source layer ℓ of the grid;
2. target prompt: three demonstrations sampled with a seed from a pool (`target_prompts`), " | "-joined, then
   " | " and n placeholders " x"; several seeds give several target prompts;
3. for every (ℓ, ℓ*) pair, write the n source states over the n placeholders at block ℓ* and decode greedily
   (up to 60 new tokens) — all pairs of a target prompt in one batched, KV-cached generate (`patching`);
4. cut the text at the first "\\n", "$", "." or "|" past 20% of its length; score it: class rate, ROUGE-1/2/L
   (max over reference descriptions), semantic similarity to the references (`metrics`);
5. per checkpoint: the best score over the grid (the paper's max) and robust aggregates over all pairs and
   target prompts (mean class rate, share of pairs naming every class, mean of the top-k similarities); per run:
   Spearman ρ between checkpoint accuracy and each score.

Defaults differ from the paper where a 135M model on a CPU needs it: an every-3rd-layer grid (`--layers all` is
the paper's 2..L-2 square) and 3 target prompts per checkpoint, because at this size a single max is noise.
`--protocol paper` switches to the authors' released procedure (source pass after block 0, their stop token and
cut rule, the full grid, one target prompt); docs/describe.md lists every difference. `--control` adds a positive
control: the same grid on the embeddings of a true task description, which should name the classes.
"""
# size: InSPEcT end to end: the config, the procedure, scoring, the summary and the sweep wiring; splitting it (like wayward and bias) is open work.

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..engine.carry import recorded, resolve
from ..engine.config import SEED, PromptModelOptions, TaskReadOptions, option
from ..engine.errors import SoftscopeError
from ..engine.executor import PLACEMENT_FIELDS, ExecutorOptions, Unit, run_units
from ..engine.metrics import class_rate, rouge_scores, semantic_similarity, unexpected_words
from ..engine.models import DEFAULT_MODEL, ModelAdapter, load_model, text_embeddings
from ..engine.patching import SOURCE_PASSES, STOPS, layer_pairs, patch_generate, source_states
from ..engine.prompts import SoftPrompt
from ..engine.runs import Run, fingerprint, register_kind, resolve_path, save_figure
from ..engine.stats import correlation, interval_of
from ..engine.target_prompts import MARKER, POOLS, build as build_target
from ..engine.tasks import _builtin_name
from ..engine.training import list_checkpoints

KIND = register_kind("describe")

METRICS = ("class_rate", "rouge1", "rouge2", "rougeL", "similarity")
CUT_CHARS = "\n$.|"
CUTS = ("softscope", "paper")
PROTOCOLS = ("softscope", "paper")
# what --protocol paper sets (fields still at their softscope default only): the authors' released code
PAPER = {"source_pass": "after-block-0", "stop": "paper", "cut": "paper", "layers": "all", "max_new_tokens": 60,
         "n_targets": 1}
COPY_N, COPY_THRESHOLD = 4, 0.5  # a description copying a target-prompt demo: see mark_copies


@dataclass
class DescribeConfig(PromptModelOptions, TaskReadOptions, ExecutorOptions):
    """Describe the soft prompt(s) of a run dir, a prompt file or a PEFT adapter dir over a layer grid."""

    layers: str = option("every:3", "layer pairs: all (source 2..L-2 x target 2..L-2), every:K, band:A-B, or pairs 4:4,8:4")
    target_prompt: str = option("plain", f"demonstration pool ({', '.join(POOLS)}) or your own text with {MARKER} "
                                    "where the placeholders go")
    n_targets: int = option(3, "seeded target prompts per checkpoint (seeds seed, seed+1, ...; pools only)", ge=1)
    demos: int = option(3, "demonstrations per target prompt", ge=1)
    max_new_tokens: int = option(60, "greedy tokens to generate per pair", ge=1)
    seed: int = option(0, "seed of the first target prompt", **SEED)
    checkpoints: str = option("all", "for a run dir: all, last, or steps like 0,40,80")
    classes: list[str] | None = option(None, "class names of a custom task (default: from the prompt or --task)")
    references: list[str] | None = option(None, "extra reference descriptions (needed for custom tasks)")
    keep_copies: bool = option(False, f"let descriptions that copy a target-prompt demonstration (≥ {COPY_THRESHOLD:.0%} of "
                                 f"their words in {COPY_N}-word runs of one demo) be the best description")
    top_k: int = option(10, "the top-k similarities averaged per checkpoint (a steadier score than the max)", ge=1)
    batch_size: int = option(64, "layer pairs generated together", ge=1)
    elaborated: bool = option(False, "bias probe: cue-naming target prompts (pool 'elaborated' unless --target-prompt names "
                                "another) and the words descriptions mention beyond class names and references")
    source_pass: str = option("embeddings", "source states: embeddings (the prompt as input embeddings, as trained) or "
                                       "after-block-0 (tokens ' x' x n, block 0's output overwritten: the authors' code)",
                              choices=SOURCE_PASSES)
    stop: str = option("eos", "end a description at: eos, none (always max-new-tokens), or paper (the authors' stop token, "
                         "the first id of encode('$'))",
                       choices=STOPS)
    cut: str = option("softscope", "description cut: softscope (first \\n $ . | past 20%) or paper (the authors' rule)",
                      choices=CUTS)
    protocol: str = option("softscope", "paper: the authors' procedure (after-block-0, --stop paper, --cut paper, --layers "
                                   "all, 60 tokens, one target prompt) for every setting left at its default",
                           choices=PROTOCOLS)
    control: bool = option(False, "positive control: also describe a prompt set to e(true task description)")
    control_text: str | None = option(None, "the control's description (default: the task's first reference description)")

    def __post_init__(self) -> None:
        TaskReadOptions.__post_init__(self)
        ExecutorOptions.__post_init__(self)
        if self.protocol == "paper":
            import dataclasses

            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            for k, v in PAPER.items():
                if getattr(self, k) == defaults[k]:
                    setattr(self, k, v)
        if self.control_text is not None and not self.control_text.strip():
            raise SoftscopeError("--control-text must not be empty")
        if self.elaborated and self.target_prompt == "plain":
            self.target_prompt = "elaborated"
        if self.target_prompt not in POOLS and MARKER not in self.target_prompt:
            raise SoftscopeError(f"--target-prompt {self.target_prompt!r}: use {', '.join(POOLS)} or a text with "
                                 f"{MARKER} where the soft prompt goes")
        if self.target_prompt not in POOLS and self.n_targets != 1:
            self.n_targets = 1  # a user's own text is one target prompt
        c = self.checkpoints.strip().lower()
        if c not in ("all", "last") and not all(p.strip().isdigit() for p in c.split(",")):
            raise SoftscopeError(f"--checkpoints {self.checkpoints!r}: use all, last or steps like 0,40,80")


@dataclass
class DescribeResult:
    out_dir: Path
    rows: list[dict]
    summary: dict
    seconds: float = 0.0
    plots: list[Path] = field(default_factory=list)


# ---- what gets described -------------------------------------------------------------------------------------
def _checkpoints(source: Path, which: str) -> list[tuple[str, SoftPrompt]]:
    """(name, prompt) pairs: every checkpoint of a run dir, or the one prompt of a file / PEFT adapter dir."""
    if source.is_dir() and not (source / "adapter_model.safetensors").exists():
        files = list_checkpoints(source)
        if not files:
            if (source / "prompt.safetensors").exists():
                return [("prompt.safetensors", SoftPrompt.load(source / "prompt.safetensors"))]
            raise SoftscopeError(f"{source} has no checkpoints/ and no prompt.safetensors: not a training run dir")
        items = [(str(f.relative_to(source)), SoftPrompt.load(f)) for f in files]
        w = which.strip().lower()
        if w == "last":
            return items[-1:]
        if w != "all":
            steps = {int(s) for s in w.split(",")}
            items = [it for it in items if it[1].step in steps]
            missing = steps - {it[1].step for it in items}
            if missing:
                raise SoftscopeError(f"no checkpoint at step(s) {sorted(missing)} in {source}")
        return items
    return [(source.name, SoftPrompt.load(source))]


def _scoring_target(prompt: SoftPrompt, cfg: DescribeConfig) -> tuple[str, list[str], list[str]]:
    """(task name, class names, reference descriptions) for scoring: the prompt's own task (engine.carry) unless
    --task names another; a recorded task whose data is gone falls back to the classes the prompt carries."""
    classes, refs = list(cfg.classes or []), []
    given = cfg.given()
    rec = recorded(prompt)
    spec = cfg.task or rec.get("task") or ""
    loadable = bool(_builtin_name(spec) or Path(spec).exists() or spec.startswith("hub:"))
    # a custom name (scored with --classes and --references) or a recorded task whose data moved
    name = "" if loadable else (cfg.task or rec.get("task_name") or spec)
    if loadable:
        try:
            reading = resolve(prompt, given, cfg.allow_other_task, what="the described prompt")
        except SoftscopeError:
            if cfg.task:
                raise
            reading = None  # the recorded data moved: score with the prompt's own classes and --references
        if reading is not None:
            task = reading.task
            classes = classes or list(task.classes)
            refs = list(task.references)
            name = task.name
    classes = classes or list(prompt.classes)
    refs = refs + [r for r in (cfg.references or []) if r not in refs]
    name = name or rec.get("task_name") or prompt.task or ""
    if not classes:
        raise SoftscopeError("no class names for scoring: pass --task or --classes (the prompt carries none)")
    if not refs:
        raise SoftscopeError(f"no reference descriptions for task {name or '(unknown)'}: pass --references")
    return name or "custom", classes, refs


# ---- one description ---------------------------------------------------------------------------------------
def cut(text: str) -> str:
    """softscope's cut: end at the first newline, '$', '.' or '|' that lies past 20% of the text's length."""
    for i, ch in enumerate(text):
        if ch in CUT_CHARS and i > 0.2 * len(text):
            return text[:i].strip()
    return text.strip()


def cut_paper(text: str) -> str:
    """The InSPEcT authors' cut (their scoring script): strip, then end at the first mark at or past 20% of the
    length, dropping everything up to the last mark before it; with no such mark the whole stripped text."""
    text = text.strip()
    start = 0
    for i, ch in enumerate(text):
        if ch in CUT_CHARS:
            if i >= 0.2 * len(text):
                return text[start:i]
            start = i + 1
    return text


CUTTERS = {"softscope": cut, "paper": cut_paper}


def score_rows(rows: list[dict], classes: list[str], references: list[str]) -> None:
    """Add class rate, ROUGE-1/2/L and semantic similarity of each row's cut text, in place."""
    sims = semantic_similarity([r["cut"] for r in rows], references)
    for r, s in zip(rows, sims):
        r["class_rate"] = class_rate(r["cut"], classes)
        r.update(rouge_scores(r["cut"], references))
        r["similarity"] = s


def describe_prompt(adapter: ModelAdapter, prompt: torch.Tensor, pairs: list[tuple[int, int]], targets: list,
                    max_new_tokens: int = 60, batch_size: int = 64, source_pass: str = "embeddings",
                    stop: str = "eos", cut_rule: str = "softscope",
                    placement: str = "after_bos") -> list[dict]:
    """Generated and cut descriptions of one prompt [n, d] for every (target prompt, layer pair) — unscored."""
    sources = sorted({s for s, _ in pairs})
    S = source_states(adapter, prompt, sources, source_pass, placement)  # [L', n, d]
    at = {l: i for i, l in enumerate(sources)}
    stacked = torch.stack([S[at[s]] for s, _ in pairs])
    rows = []
    for tp in targets:
        texts = patch_generate(adapter, tp.ids, tp.placeholder_positions, stacked, [t for _, t in pairs],
                               max_new_tokens=max_new_tokens, stop=stop, batch_size=batch_size)
        for (s, t), text in zip(pairs, texts):
            rows.append({"target_seed": tp.seed, "source_layer": s, "target_layer": t, "text": text,
                         "cut": CUTTERS[cut_rule](text)})
    return rows


# ---- copies of the target prompt's demonstrations --------------------------------------------------------------
# A description copies a demonstration when at least COPY_THRESHOLD of its words (lower-cased) lie in runs of
# COPY_N or more consecutive words that also occur in one demonstration of its target prompt (a description
# shorter than COPY_N words: when it occurs whole in one). Such a description repeats the target prompt, not what
# the soft prompt means ("of the text: English, French, German, Spanish": 4 of 7 words); it is flagged and, by
# default, left out of the "best" descriptions and of the correlations built on them.
def _words(text: str) -> list[str]:
    import re

    return re.findall(r"\w+", text.lower())


def demo_overlap(text: str, demos: list[str]) -> float:
    """The largest share, over the demonstrations, of the text's words inside a COPY_N-word run shared with it."""
    w = _words(text)
    if not w or not demos:
        return 0.0
    n = min(COPY_N, len(w))
    best = 0.0
    for d in demos:
        dw = _words(d)
        grams = {tuple(dw[i:i + n]) for i in range(len(dw) - n + 1)}
        covered = {j for i in range(len(w) - n + 1) if tuple(w[i:i + n]) in grams for j in range(i, i + n)}
        best = max(best, len(covered) / len(w))
    return best


def mark_copies(rows: list[dict], targets: list) -> None:
    """Add demo_overlap and copies_demo to each row, from the demonstrations of its own target prompt."""
    demos = {t.seed: list(t.demos) for t in targets}
    for r in rows:
        r["demo_overlap"] = demo_overlap(r["cut"], demos.get(r.get("target_seed"), []))
        r["copies_demo"] = r["demo_overlap"] >= COPY_THRESHOLD


# ---- aggregation ---------------------------------------------------------------------------------------------
def _best(rows: list[dict], metric: str) -> dict:
    r = max(rows, key=lambda r: (r[metric], -r["source_layer"], -r["target_layer"]))
    return {"score": r[metric], "source_layer": r["source_layer"], "target_layer": r["target_layer"],
            "target_seed": r["target_seed"], "cut": r["cut"], "copies_demo": bool(r.get("copies_demo"))}


def summarize_checkpoint(rows: list[dict], top_k: int, exclude_copies: bool = True) -> dict:
    """The paper's max over the grid per metric, plus aggregates that do not hinge on one lucky pair.

    With exclude_copies, "best" is taken over descriptions that do not copy a demonstration (all rows when
    every one does); `copies` counts the rows that copy one."""
    own = [r for r in rows if not r.get("copies_demo")] if exclude_copies else rows
    pool = own or rows
    seeds = sorted({r["target_seed"] for r in rows}, key=str)
    sims = sorted((r["similarity"] for r in rows), reverse=True)
    out = {
        "pairs": len({(r["source_layer"], r["target_layer"]) for r in rows}),
        "target_prompts": len(seeds),
        "copies": sum(bool(r.get("copies_demo")) for r in rows),
        "best_excludes_copies": exclude_copies and bool(own),
        "best": {m: _best(pool, m) for m in METRICS},
        "class_rate_mean": sum(r["class_rate"] for r in rows) / len(rows),
        "naming_share": sum(r["class_rate"] >= 1.0 for r in rows) / len(rows),
        "similarity_topk": sum(sims[:top_k]) / len(sims[:top_k]),
        "similarity_mean": sum(sims) / len(sims),
        "rouge1_mean": sum(r["rouge1"] for r in rows) / len(rows),
        # the spread of the max across target prompts (a max that flips between them is noise)
        "max_per_target": {m: [max(r[m] for r in rows if r["target_seed"] == s) for s in seeds] for m in METRICS},
    }
    for m in METRICS:
        v = out["max_per_target"][m]
        out[f"{m}_max_mean"] = sum(v) / len(v)
    return out


# The one score a describe run is judged by, fixed before any new experiment (docs/methods.md §4): chosen on the
# four tasks of the existing InSPEcT experiment, so only runs after that choice test it. All others are secondary.
PRIMARY_SCORE = "similarity_topk"

SCORES = ("best.class_rate", "best.rouge1", "best.similarity", "class_rate_max_mean", "rouge1_max_mean",
          "similarity_max_mean", "class_rate_mean", "naming_share", "similarity_topk", "similarity_mean",
          "rouge1_mean")


def score_of(ck: dict, key: str) -> float:
    """A per-checkpoint score by name ('best.<metric>' is the max over the grid)."""
    if key.startswith("best."):
        return ck["best"][key[5:]]["score"]
    return ck[key]


def correlations(checkpoints: list[dict]) -> dict:
    """Spearman ρ (and Pearson) between checkpoint accuracy and every per-checkpoint score."""
    acc = [c["accuracy"] if c["accuracy"] is not None else float("nan") for c in checkpoints]
    return {k: correlation(acc, [score_of(c, k) for c in checkpoints]) for k in SCORES}


# ---- plots -------------------------------------------------------------------------------------------------
def _plots(out: Path, rows: list[dict], summary: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    last = summary["checkpoints"][-1]
    lrows = [r for r in rows if r["checkpoint"] == last["checkpoint"]]
    src = sorted({r["source_layer"] for r in lrows})
    tgt = sorted({r["target_layer"] for r in lrows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, metric, title in ((axes[0], "class_rate", "class rate"), (axes[1], "similarity", "semantic similarity")):
        grid = torch.full((len(src), len(tgt)), float("nan"))
        for i, s in enumerate(src):
            for j, t in enumerate(tgt):
                v = [r[metric] for r in lrows if r["source_layer"] == s and r["target_layer"] == t]
                if v:
                    grid[i, j] = sum(v) / len(v)
        im = ax.imshow(grid.numpy(), origin="lower", cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(tgt)), tgt, fontsize=7)
        ax.set_yticks(range(len(src)), src, fontsize=7)
        ax.set_xlabel("target layer ℓ*")
        ax.set_ylabel("source layer ℓ")
        ax.set_title(f"{title} (mean over {last['target_prompts']} target prompts)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{summary['task']}: step {last['step']}, accuracy "
                 + (f"{last['accuracy']:.3f}" if last["accuracy"] is not None else "n/a"))
    fig.tight_layout()
    paths.append(save_figure(fig, out / "heatmap_class_rate.png"))

    cks = [c for c in summary["checkpoints"] if c["accuracy"] is not None]
    if len(cks) >= 2:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        acc = [c["accuracy"] for c in cks]
        for key, label in (("best.class_rate", "max class rate"), ("class_rate_mean", "mean class rate"),
                           ("best.similarity", "max similarity"), ("similarity_topk", "top-k similarity"),
                           ("best.rouge1", "max ROUGE-1")):
            rho = summary["correlation"].get(key, {}).get("spearman", float("nan"))
            ax.plot(acc, [score_of(c, key) for c in cks], "o", ms=5, alpha=0.8, label=f"{label} (ρ={rho:.2f})")
        for c in cks:
            ax.annotate(str(c["step"]), (c["accuracy"], score_of(c, "similarity_topk")), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
        ax.set_xlabel("checkpoint accuracy")
        ax.set_ylabel("description score")
        ax.set_title(f"{summary['task']}: description quality vs accuracy")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(save_figure(fig, out / "accuracy_vs_score.png"))
    return paths


# ---- the positive control ------------------------------------------------------------------------------------
CONTROL = "control"  # its checkpoint name in descriptions.jsonl


def _control_text(cfg: DescribeConfig, refs: list[str]) -> str:
    """The control's true task description: --control-text, else the task's first reference description."""
    return cfg.control_text or refs[0]


def _control_unit(adapter: ModelAdapter, cfg: DescribeConfig, shared: dict, refs: list[str]) -> Unit:
    """The control as one more unit (it runs where the checkpoints run): the same grid and target-prompt seeds on
    P = e(true task description) at its own length. If this prompt does not get its classes named, no trained
    prompt can be expected to. Scored against the references other than the control text itself, so its ROUGE
    and similarity are not a copy's."""
    text = _control_text(cfg, refs)
    _, P = text_embeddings(adapter, text)
    targets = [build_target(adapter, cfg.target_prompt, P.shape[0], cfg.seed + i, cfg.demos)
               for i in range(cfg.n_targets)]
    return Unit(CONTROL, {**shared, "prompt": P, "placement": "after_bos", "targets": targets,
                          "refs": [r for r in refs if r != text] or refs})


def _control_summary(cfg: DescribeConfig, adapter: ModelAdapter, rows: list[dict], refs: list[str]) -> dict:
    """The control's text, its length in tokens and its rows summarised like a checkpoint's."""
    text = _control_text(cfg, refs)
    done = [r for r in rows if r["checkpoint"] == CONTROL]
    return {"text": text, "tokens": len(adapter.encode(text)),
            **summarize_checkpoint(done, cfg.top_k, not cfg.keep_copies)}


def describe_unit(adapter: ModelAdapter, unit: Unit) -> list[dict]:
    """One checkpoint of a describe sweep (runs here or on a Ray worker): its scored descriptions over the grid, each
    flagged when it copies a demonstration of its target prompt (mark_copies)."""
    a = unit.args
    rows = describe_prompt(adapter, a["prompt"], a["pairs"], a["targets"], a["max_new_tokens"], a["batch_size"],
                           a["source_pass"], a["stop"], a["cut"], a["placement"])
    score_rows(rows, a["classes"], a["refs"])
    mark_copies(rows, a["targets"])
    return rows


# ---- the method --------------------------------------------------------------------------------------------
def default_out(source: str | Path) -> Path:
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
    out = Path(out) if out else default_out(source)
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

    with Run.open(out, KIND, fingerprint(cfg, source=str(source)), growable=PLACEMENT_FIELDS,
                  command=command) as run:  # where the units run is not a setting of the results
        return _describe(run, t0, cfg, source, items, model_spec, adapter, task_name, classes, refs, pairs, targets,
                         progress)


def _describe(run: Run, t0, cfg, source, items, model_spec, adapter, task_name, classes, refs, pairs, targets,
              progress) -> DescribeResult:
    out = run.path
    if not run.existing:
        run.write_config(cfg, source=str(source), model=adapter.name, task=task_name, classes=classes,
                         references=refs, pairs=pairs, target_prompts=[t.to_dict() for t in targets])
    rows = run.read_jsonl("descriptions.jsonl")
    per = Counter(r["checkpoint"] for r in rows)
    full = len(pairs) * len(targets)
    rows = [r for r in rows if per[r["checkpoint"]] == full]  # a checkpoint cut short is described again
    done = {r["checkpoint"] for r in rows}
    if len(rows) != sum(per.values()):
        run.write_jsonl("descriptions.jsonl", rows)
    meta = {name: (p.step, p.accuracy) for name, p in items}
    shared = {"pairs": pairs, "targets": targets, "max_new_tokens": cfg.max_new_tokens, "batch_size": cfg.batch_size,
              "source_pass": cfg.source_pass, "stop": cfg.stop, "cut": cfg.cut, "classes": classes, "refs": refs}
    units = [Unit(name, {"prompt": p.tensor, "placement": p.placement, **shared}) for name, p in items
             if name not in done]
    if cfg.control and CONTROL not in done:
        units.append(_control_unit(adapter, cfg, shared, refs))
    meta[CONTROL] = (None, None)

    def record(unit: Unit, new: list[dict]) -> None:  # the driver alone writes, through its Run
        step, acc = meta[unit.key]
        new = [{"checkpoint": unit.key, "step": step, "accuracy": acc, **r} for r in new]
        run.append_jsonl("descriptions.jsonl", new)  # a finished checkpoint survives an interruption
        rows.extend(new)

    worker_model = resolve_path("model", model_spec)  # a local folder as an absolute path: workers run elsewhere
    run_units(units, describe_unit, setup=load_model,
              setup_args=(worker_model, cfg.device, cfg.dtype, cfg.trust_remote_code), ctx=adapter, options=cfg,
              on_result=record, progress=progress)
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
