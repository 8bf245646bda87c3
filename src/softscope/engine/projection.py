"""Nearest-vocabulary projection of virtual tokens (L2, cosine or dot), the plainest reading of a soft prompt.

Uses the input embedding matrix (with any embedding scale the model applies); reports when the output
embeddings are untied, since then "nearest input token" and "most predicted token" can differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import check_number
from .errors import SoftscopeError
from .models import ModelAdapter, special_ids, token_embeddings
from .prompts import SoftPrompt

METRICS = ("l2", "cos", "dot")


def similarity(P: torch.Tensor, E: torch.Tensor, metric: str) -> torch.Tensor:
    """Score [n, V], higher = nearer: −L2 distance, cosine, or raw dot product."""
    P, E = P.to(E.dtype), E
    if metric == "l2":
        d2 = (P * P).sum(-1, keepdim=True) - 2 * P @ E.T + (E * E).sum(-1)[None]
        return -d2.clamp_min(0).sqrt()
    if metric == "cos":
        return torch.nn.functional.normalize(P, dim=-1) @ torch.nn.functional.normalize(E, dim=-1).T
    if metric == "dot":
        return P @ E.T
    raise SoftscopeError(f"unknown metric {metric!r}: use l2, cos or dot")


def nearest_ids(P: torch.Tensor, E: torch.Tensor, metric: str = "l2", exclude: list[int] | None = None) -> torch.Tensor:
    """Index of the nearest vocabulary row for each virtual token [n] (the fast path PEZ/wayward call per step)."""
    s = similarity(P, E, metric)
    if exclude:
        s[:, exclude] = float("-inf")
    return s.argmax(-1)


def project_straight_through(P: torch.Tensor, E: torch.Tensor, metric: str = "cos",
                             exclude: list[int] | None = None) -> torch.Tensor:
    """Forward: nearest token embeddings; backward: gradient passes to P unchanged (PEZ's projected gradient)."""
    with torch.no_grad():
        proj = E[nearest_ids(P.detach(), E, metric, exclude)].to(P.dtype)
    return P + (proj - P).detach()


@dataclass
class Projection:
    metric: str
    ids: list[int]  # nearest token per position
    text: str  # decoded string of the nearest tokens
    top: list[list[dict]]  # per position: top-k {id, token, score}
    untied_output: bool

    def to_dict(self) -> dict:
        return {"metric": self.metric, "ids": self.ids, "text": self.text, "top": self.top,
                "untied_output_embeddings": self.untied_output}


def hard_ids(adapter: ModelAdapter, P: torch.Tensor) -> list[int]:
    """A hard reading of P: the cosine-nearest non-special vocabulary token of each virtual token (PEZ's projection)."""
    E = token_embeddings(adapter).detach().float()
    return nearest_ids(P.detach().float().to(E.device), E, "cos", special_ids(adapter)).tolist()


def check_options(metric: str, top_k: int) -> None:
    """Refuse an unknown metric or a top-k below 1 (before a model is loaded, when the CLI calls it)."""
    if metric not in METRICS:
        raise SoftscopeError(f"unknown metric {metric!r}: use {', '.join(METRICS)}")
    check_number("--top-k", top_k, ge=1)


def project(adapter: ModelAdapter, P: torch.Tensor, metric: str = "l2", top_k: int = 5,
            skip_special: bool = True) -> Projection:
    """Top-k nearest vocabulary tokens per virtual token, with scores (L2 reports the distance itself)."""
    check_options(metric, top_k)
    if P.shape[-1] != adapter.width:
        raise SoftscopeError(f"prompt width {P.shape[-1]} does not match model width {adapter.width}: pass the prompt's --model")
    E = token_embeddings(adapter).detach().float()
    s = similarity(P.detach().float().to(E.device), E, metric)
    if skip_special:
        s[:, special_ids(adapter)] = float("-inf")
    k = min(top_k, s.shape[1])
    val, idx = s.topk(k, dim=-1)
    tok = adapter.tokenizer
    top = [[{"id": int(i), "token": tok.decode([int(i)]), "score": float(-v if metric == "l2" else v)}
            for v, i in zip(val[r], idx[r])] for r in range(s.shape[0])]
    ids = idx[:, 0].tolist()
    return Projection(metric=metric, ids=ids, text=tok.decode(ids), top=top, untied_output=not adapter.tied_embeddings)


# A prompt whose every virtual token moved less than this share of its initial norm still projects to its
# initialisation (with the default seed, every such prompt reads the same): `movement` warns about it.
MOVED_MIN = 0.01


def initial_prompt(prompt, path=None) -> torch.Tensor | None:
    """The prompt's initialisation: stored with it, else the step-0 checkpoint of the run it belongs to."""
    from pathlib import Path

    if getattr(prompt, "init", None) is not None:
        return prompt.init
    if path is None:
        return None
    p = Path(path)
    for run in ((p,) if p.is_dir() else (p.parent, p.parent.parent)):
        ck = run / "checkpoints" / "step-00000.safetensors"
        if ck.exists():
            t = SoftPrompt.load(ck).tensor
            return t if t.shape == prompt.tensor.shape else None
    return None


def movement(prompt, path=None) -> dict | None:
    """Each virtual token's L2 distance from its initial embedding (absolute and relative to the initial norm),
    with a warning when all moved less than MOVED_MIN; None when the initialisation is unknown."""
    P0 = initial_prompt(prompt, path)
    if P0 is None:
        return None
    P, P0 = prompt.tensor.float().cpu(), P0.float().cpu()
    dist = (P - P0).norm(dim=-1)
    rel = dist / P0.norm(dim=-1).clamp_min(1e-12)
    warn = None
    if float(rel.max()) < MOVED_MIN:
        warn = (f"the prompt has hardly moved from its initialisation (largest move {float(rel.max()):.4f} of a "
                f"token's norm, below {MOVED_MIN}): its projection shows the initial tokens, not what training learned")
    return {"distance": dist.tolist(), "relative": rel.tolist(), "max_relative": float(rel.max()),
            "threshold": MOVED_MIN, "warning": warn}
