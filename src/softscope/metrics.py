"""Scores shared by the methods and the report: prompt-F1, perplexity, correlations (+ description scores).

Text-description scores (class rate, ROUGE, semantic similarity) are used by InSPEcT and the bias probe.
"""

from __future__ import annotations

import collections
import math
import re
import string

import torch

from .models import ModelAdapter, lm_logits


# ---- SQuAD-style word F1 (waywardness prompt-F1) ----------------------------------------------------------
def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalisation: lower-case, drop punctuation, articles and extra whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def word_f1(prediction: str, reference: str) -> float:
    """SQuAD word-overlap F1 between two strings (1.0 when both normalise to nothing)."""
    p, r = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not p or not r:
        return float(p == r)
    common = collections.Counter(p) & collections.Counter(r)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(r)
    return 2 * precision * recall / (precision + recall)


# ---- perplexity of a discrete prompt under the LM ---------------------------------------------------------
def start_token(adapter: ModelAdapter) -> int:
    """The token a text is scored after: BOS when the model has one, else EOS (a document boundary)."""
    tok = adapter.tokenizer
    return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id


@torch.no_grad()
def token_nll(adapter: ModelAdapter, ids: list[int]) -> list[float]:
    """NLL of every token of `ids` given the start token and the tokens before it."""
    if not ids:
        return []
    seq = torch.tensor([[start_token(adapter)] + list(ids)], device=adapter.device)
    out = adapter.model.base_model(input_ids=seq, use_cache=False)
    h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    lp = lm_logits(adapter, h[0, :-1]).float().log_softmax(-1)
    return (-lp.gather(1, seq[0, 1:, None])[:, 0]).tolist()


def perplexity(adapter: ModelAdapter, text_or_ids: str | list[int]) -> float:
    """exp(mean NLL) of a text (or token ids) under the LM, every token scored (after BOS/EOS)."""
    ids = adapter.encode(text_or_ids) if isinstance(text_or_ids, str) else list(text_or_ids)
    nll = token_nll(adapter, ids)
    return math.exp(sum(nll) / len(nll)) if nll else float("nan")


# ---- correlations -------------------------------------------------------------------------------------------
def correlation(x: list[float], y: list[float]) -> dict:
    """Spearman and Pearson with p-values; NaN where undefined (constant input or < 3 points)."""
    from scipy import stats

    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None and not (math.isnan(a) or math.isnan(b))]
    out = {"n": len(pairs), "spearman": float("nan"), "spearman_p": float("nan"), "pearson": float("nan"),
           "pearson_p": float("nan")}
    if len(pairs) < 3:
        return out
    a, b = zip(*pairs)
    if len(set(a)) < 2 or len(set(b)) < 2:
        return out
    s = stats.spearmanr(a, b)
    p = stats.pearsonr(a, b)
    out.update(spearman=float(s.statistic), spearman_p=float(s.pvalue), pearson=float(p.statistic),
               pearson_p=float(p.pvalue))
    return out
