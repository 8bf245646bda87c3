"""The method (Ramati et al.): each checkpoint's prompt, its source states patched into target prompts, the model's continuation cut and scored."""

from __future__ import annotations

from pathlib import Path

import torch

from ...engine.carry import recorded, resolve
from ...engine.errors import SoftscopeError
from ...engine.metrics import class_rate, rouge_scores, semantic_similarity
from ...engine.models import ModelAdapter
from ...engine.patching import patch_generate, source_states
from ...engine.prompts import SoftPrompt
from ...engine.tasks import _builtin_name
from ...engine.training import list_checkpoints
from .config import CUT_CHARS, DescribeConfig


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
