"""`softscope explain PROMPT`: one soft prompt read three ways, side by side, each reading put to the test.

The readings (docs/methods.md §2, §4, §6):
- **projection**: the nearest vocabulary token of every virtual token (cosine by default; `projection.project`);
- **InSPEcT**: the best description the model writes of the prompt (highest semantic similarity to the task's
  reference descriptions over the layer grid). Taken from the run's `describe/` results when they exist for
  this prompt's step, else a small `describe` run (one target prompt, every 6th layer, 30 new tokens);
- **PEZ**: a hard prompt found by PEZ's projected gradient descent *started from the soft prompt*
  (`pez.run_pez` with the prompt as init: a few steps on the task's training data, the checkpoint chosen on
  held-out data; the cosine projection is its step 0), so it is the discrete prompt near P that still does the task.

Each reading is a text D. It is tested like a prompt: its token embeddings take the soft prompt's place
before the input text, and on a seeded held-out test subset we measure
- **faithfulness**: agreement of D's predictions with P's, D's accuracy, the accuracy gap (P − D) and the
  mean KL(P ‖ D) between their label distributions (softmax over the classes' label-word log-likelihoods);
- **scrutability**: perplexity of D under the LM and the share of its words that are dictionary words;
both measured by `softscope.interpret` (with its faithful / scrutable / interpretable verdicts).

Defaults are chosen to stay cheap (about a minute on 2 CPU cores): 100 test examples, 20 PEZ steps.
Outputs (default RUN_DIR/explain): config.json, readings.jsonl, explain_summary.json (the report's Explain
section reads it).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..engine.carry import model_for, resolve as resolve_settings
from ..engine.config import LR, SEED, PromptModelOptions, ReadOptions, option, validate
from ..engine.errors import SoftscopeError
from ..engine.models import DEFAULT_MODEL, ModelAdapter, load_model
from ..engine.projection import hard_ids, project
from ..engine.prompts import SoftPrompt, pickle_only
from ..engine.runs import Run, fingerprint, read_records, register_kind
from ..engine.scoring import Scorer
from ..records import DescriptionRow, DiscreteRun
from .describe import DescribeConfig, describe
from .interpret import interpret_reading
from .pez import PezConfig, run_pez

KIND = register_kind("explain")

READINGS = ("projection", "inspect", "pez")


@dataclass
class ExplainConfig(PromptModelOptions, ReadOptions):
    """Read one soft prompt three ways (projection, InSPEcT, PEZ) and measure each reading (task settings: the
    prompt's own unless an option overrides them)."""

    readings: list[str] = option(list(READINGS), "readings to compute: projection, inspect, pez")
    metric: str = option("cos", "projection distance: cos, l2 or dot",
                         choices=("cos", "l2", "dot"))
    examples: int = option(100, "seeded test examples for faithfulness (0 = the whole test set)", ge=0)
    layers: str = option("every:6", "InSPEcT layer grid when the run has no describe results for this prompt")
    n_targets: int = option(1, "InSPEcT target prompts when describing here", ge=1)
    max_new_tokens: int = option(30, "InSPEcT tokens generated per layer pair when describing here", ge=1)
    pez_steps: int = option(20, "PEZ steps from the soft prompt (0 = the plain cosine projection)", ge=0)
    pez_lr: float = option(0.1, "PEZ learning rate", **LR)
    pez_batch_size: int = option(8, "PEZ examples per step", ge=1)
    fluency_weight: float = option(0.0, "PEZ fluency weight w in [0, 1): w*NLL_LM + (1-w)*task loss", ge=0, lt=1)
    seed: int = option(0, "seed for the test subset, PEZ data order and InSPEcT target prompts", **SEED)

    def __post_init__(self) -> None:
        validate(self)
        self.readings = [r.strip().lower() for r in (self.readings or [])]
        bad = [r for r in self.readings if r not in READINGS]
        if bad or not self.readings:
            raise SoftscopeError(f"--readings {','.join(bad) or '(none)'}: use some of {', '.join(READINGS)}")


@dataclass
class ExplainResult:
    out_dir: Path
    summary: dict


# ---- where things are ------------------------------------------------------------------------------------
def prompt_and_run(source: str | Path) -> tuple[Path, Path | None]:
    """(prompt file or PEFT dir, the training run dir it belongs to or None)."""
    p = Path(source)
    if not p.exists():
        raise SoftscopeError(f"{p} does not exist: pass a prompt file, a run dir or a PEFT adapter dir")
    if p.is_dir():
        if (p / "adapter_model.safetensors").exists():
            return p, None
        if (p / "prompt.safetensors").exists():
            return p / "prompt.safetensors", p
        pickle_only(p)
        raise SoftscopeError(f"{p} holds no prompt.safetensors (is the training finished?) nor a PEFT adapter")
    for run in (p.parent, p.parent.parent):
        if (run / "metrics.jsonl").exists() and (run / "config.json").exists():
            return p, run
    return p, None


def default_out(prompt_file: Path, run: Path | None) -> Path:
    """RUN_DIR/explain for a run's final prompt, RUN_DIR/explain-<stem> for a checkpoint, else beside the file."""
    if run is not None:
        return run / ("explain" if prompt_file == run / "prompt.safetensors" else f"explain-{prompt_file.stem}")
    return prompt_file.with_name(prompt_file.stem + "-explain")


# ---- faithfulness and scrutability (softscope.interpret) ---------------------------------------------------
class Judge:
    """Scores every reading against the soft prompt on one fixed test subset (P's predictions computed once)."""

    def __init__(self, adapter: ModelAdapter, task, prompt: SoftPrompt, examples: int, seed: int,
                 settings: dict | None = None):
        self.adapter, self.task, self.prompt = adapter, task, prompt
        settings = settings or prompt.settings
        self.scoring = {"max_length": settings.get("max_length") or 80,
                        "verbalizer": settings.get("verbalizer") or "auto", "placement": prompt.placement}
        scorer = Scorer(adapter, task, **self.scoring)
        self.test = task.subset("test", examples or None, seed)
        self.gold = torch.tensor([r.label for r in scorer.rows(self.test)])
        self.truncated = scorer.truncated(self.test)
        with torch.no_grad():
            self.lp_soft = scorer.predict(prompt.tensor, self.test)
        self.accuracy = float((self.lp_soft.argmax(-1) == self.gold).float().mean())

    def __call__(self, ids: list[int]) -> dict:
        """interpret.interpret_reading of these token ids: faithfulness, scrutability, the verdicts."""
        rep = interpret_reading(self.adapter, self.task, self.prompt, list(ids), examples=self.test,
                                soft_logprobs=self.lp_soft, **self.scoring)
        return {k: rep[k] for k in ("faithfulness", "scrutability", "faithful", "scrutable", "interpretable",
                                    "text_roundtrip") if k in rep}


# ---- the three readings ------------------------------------------------------------------------------------
def read_projection(adapter: ModelAdapter, prompt: SoftPrompt, cfg: ExplainConfig) -> dict:
    proj = project(adapter, prompt.tensor, cfg.metric, top_k=3)
    return {"name": f"projection ({cfg.metric})", "method": "projection", "text": proj.text, "ids": proj.ids,
            "details": [{"position": i, **{f"top{k + 1}": f"{t['token']!r} {t['score']:.3f}" for k, t in enumerate(top)}}
                        for i, top in enumerate(proj.top)]}


def _describe_rows(run: Path | None, prompt: SoftPrompt) -> tuple[list[DescriptionRow], str]:
    """The run's own describe rows for this prompt's step, if any (describe writes RUN_DIR/describe)."""
    if run is None:
        return [], ""
    for f in sorted(run.glob("*/descriptions.jsonl")):
        rows = [r for r in read_records(f, DescriptionRow) if r.step == prompt.step and r.similarity is not None]
        if rows:
            return rows, str(f)
    return [], ""


def read_inspect(adapter: ModelAdapter, prompt: SoftPrompt, prompt_file: Path, run: Path | None,
                 cfg: ExplainConfig, out: Path, progress: bool) -> dict:
    rows, where = _describe_rows(run, prompt)
    if not rows:
        dcfg = DescribeConfig(model=adapter.name, device=cfg.device, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code,
                              layers=cfg.layers,
                              n_targets=cfg.n_targets, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                              task=cfg.task, data_dir=cfg.data_dir, text_column=cfg.text_column,
                              text_b_column=cfg.text_b_column, label_column=cfg.label_column, template=cfg.template,
                              label_words=cfg.label_words, allow_other_task=cfg.allow_other_task)
        res = describe(prompt_file, dcfg, out=out / "describe", adapter=adapter, progress=progress,
                       command="explain (describe)")
        rows, where = [DescriptionRow.from_dict(r) for r in res.rows], str(out / "describe" / "descriptions.jsonl")
    rows = sorted(rows, key=lambda r: (-r.similarity, r.source_layer, r.target_layer))
    best = rows[0]
    text = best.cut
    return {"name": f"InSPEcT ({best.source_layer}→{best.target_layer})", "method": "inspect", "text": text,
            "ids": adapter.encode(text), "source": where,
            "details": [{"layers": f"{r.source_layer}→{r.target_layer}", "target_seed": r.target_seed,
                         "similarity": r.similarity, "class_rate": r.class_rate, "text": r.cut} for r in rows[:5]]}


def read_pez(adapter: ModelAdapter, prompt: SoftPrompt, task, cfg: ExplainConfig, out: Path, progress: bool) -> dict:
    """PEZ started at the soft prompt (its step 0 is the cosine projection); the held-out-best hard prompt."""
    if cfg.pez_steps == 0:
        ids = hard_ids(adapter, prompt.tensor)
        return {"name": "PEZ (0 steps)", "method": "pez", "text": adapter.decode(ids), "ids": ids}
    holdout = 0 if task.dev else min(300, max(1, len(task.train) // 4))
    pcfg = PezConfig(model=adapter.name, task=task.origin or task.name, tokens=prompt.n_tokens, steps=cfg.pez_steps,
                     batch_size=cfg.pez_batch_size, lr=cfg.pez_lr, checkpoint_every=max(1, cfg.pez_steps // 2),
                     eval_examples=64, fluency_weight=[cfg.fluency_weight], holdout=holdout or 300,
                     test_examples=min(cfg.examples or 64, 64), seed=cfg.seed)
    run = out / "pez"  # a PEZ sub-run: reused if finished with these settings
    s = DiscreteRun.from_dict(run_pez(pcfg, cfg.fluency_weight, run, adapter, task, progress, init=prompt.tensor))
    name = f"PEZ ({cfg.pez_steps} steps" + (f", w={cfg.fluency_weight:g})" if cfg.fluency_weight else ")")
    return {"name": name, "method": "pez", "text": s.text, "ids": s.ids, "source": str(run),
            "details": {"selected_step": s.selected_step, "heldout": s.heldout, "heldout_accuracy": s.heldout_accuracy,
                        "curve": [c.to_dict() for c in s.curve]}}


# ---- the method --------------------------------------------------------------------------------------------
def explain(source: str | Path, cfg: ExplainConfig | None = None, out: str | Path | None = None,
            adapter: ModelAdapter | None = None, task=None, progress: bool = True) -> ExplainResult:
    """Read the prompt at `source` (file, run dir or PEFT dir) three ways and measure each; writes `out`."""
    t0 = time.time()
    cfg = cfg or ExplainConfig()

    prompt_file, run = prompt_and_run(source)
    prompt = SoftPrompt.load(prompt_file)
    overrides: list[dict] = []
    if adapter is None:
        name, overrides = model_for(prompt, cfg.model)
        adapter = load_model(name or DEFAULT_MODEL, device=cfg.device, dtype=cfg.dtype,
                             trust_remote_code=cfg.trust_remote_code)
    prompt.check_width(adapter.width, adapter.name)
    settings = None
    if task is None:
        r = resolve_settings(prompt, cfg.given(), cfg.allow_other_task, what=str(prompt_file))
        task, settings, overrides = r.task, r.settings, overrides + r.overrides
    out = Path(out) if out else default_out(prompt_file, run)
    with Run.open(out, KIND, fingerprint(cfg, prompt=str(prompt_file))) as folder:
        if not folder.existing:
            folder.write_config(cfg, prompt=str(prompt_file.resolve()), model=adapter.name, task=task.name,
                                overrides=overrides)
        return _explain(cfg, folder, t0, prompt, prompt_file, run, adapter, task, progress, settings, overrides)


def _explain(cfg: ExplainConfig, folder: Run, t0: float, prompt: SoftPrompt, prompt_file: Path, run: Path | None,
             adapter: ModelAdapter, task, progress: bool, settings: dict | None,
             overrides: list[dict]) -> ExplainResult:
    out = folder.path

    judge = Judge(adapter, task, prompt, cfg.examples, cfg.seed, settings)
    readings = []
    for which in cfg.readings:
        t = time.time()
        try:
            if which == "projection":
                r = read_projection(adapter, prompt, cfg)
            elif which == "inspect":
                r = read_inspect(adapter, prompt, prompt_file, run, cfg, out, progress)
            else:
                r = read_pez(adapter, prompt, task, cfg, out, progress)
        except SoftscopeError as e:  # one reading that cannot be made (e.g. no references) must not sink the rest
            readings.append({"name": which, "method": which, "text": "", "ids": [], "skipped": str(e)})
            continue
        r.update(judge(r["ids"]))
        r["seconds"] = time.time() - t
        readings.append(r)
    folder.write_jsonl("readings.jsonl", readings)
    summary = {"prompt": str(prompt_file), "model": adapter.name, "task": task.name, "examples": len(judge.test),
               "truncated": judge.truncated, "max_length": judge.scoring["max_length"], "overrides": overrides,
               "soft_prompt": {"n_tokens": prompt.n_tokens, "step": prompt.step, "accuracy": judge.accuracy,
                               "recorded_accuracy": prompt.accuracy},
               "readings": readings,
               "measures": "softscope.interpret.interpret_reading",
               "seconds": time.time() - t0}
    folder.write_json("explain_summary.json", summary)
    return ExplainResult(out_dir=out, summary=summary)


def _f(x, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.0%}" if pct else (f"{x:.3f}" if abs(x) < 1000 else f"{x:.3g}")


def _verdict_word(r: dict) -> str:
    if r.get("interpretable") is None:
        return "n/a"
    if r["interpretable"]:
        return "yes"
    return "no: " + "+".join(w for w, ok in (("faith", r.get("faithful")), ("scrut", r.get("scrutable"))) if ok is False)


def explain_table(summary: dict, width: int = 48) -> str:
    """The terminal table: one row per reading (the soft prompt itself first)."""
    sp = summary["soft_prompt"]
    head = (f"{'reading':<22} {'text':<{width}} {'agree':>6} {'acc':>6} {'gap':>6} {'KL':>6} {'ppl':>8} "
            f"{'dict':>5} {'interpretable':<13}")
    lines = [f"{summary['task']} · {summary['model']} · {summary['examples']} test examples · "
             f"soft prompt: {sp['n_tokens']} tokens, step {sp['step']}, accuracy {_f(sp['accuracy'])} · "
             f"truncated: {summary.get('truncated', 0)} of {summary['examples']} inputs",
             *[f"override: {o['field']} = {o['used']!r} (the prompt's: {o['recorded']!r})"
               for o in summary.get("overrides", [])],
             head, "-" * len(head)]
    for r in summary["readings"]:
        if r.get("skipped"):
            lines.append(f"{r['name']:<22} skipped: {r['skipped']}")
            continue
        f, s = r.get("faithfulness", {}), r.get("scrutability", {})
        text = r["text"].replace("\n", " ")
        text = repr(text if len(text) <= width - 2 else text[: width - 3] + "…")
        lines.append(f"{r['name'][:22]:<22} {text:<{width}} {_f(f.get('agreement')):>6} {_f(f.get('reading_accuracy')):>6} "
                     f"{_f(f.get('accuracy_gap')):>6} {_f(f.get('kl')):>6} {_f(s.get('perplexity')):>8} "
                     f"{_f(s.get('dictionary_share'), True):>5} {_verdict_word(r):<13}")
    lines.append("agree: predictions equal to the soft prompt's; gap: soft-prompt accuracy minus the reading's; "
                 "KL(soft‖reading) of the label distributions; ppl: perplexity under the LM; dict: dictionary words; "
                 "interpretable: faithful and scrutable by softscope.interpret's thresholds")
    return "\n".join(lines)
