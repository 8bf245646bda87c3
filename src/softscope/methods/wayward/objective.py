"""The waywardness objective and its readings: task loss + γ·Σ‖p_i − e(t_i)‖²/n, the projection and its prompt-F1."""

from __future__ import annotations

import re

import torch

from ...engine.metrics import word_f1
from ...engine.models import ModelAdapter, text_embeddings, token_embeddings
from ...engine.projection import project
from ...engine.training import LossTerm


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
