"""The two measures (steps 3 and 4): the biased-prediction rate of a classifier (feature flips minus control
flips) and the bias-mention rate of descriptions (by string or by sentence-embedding similarity)."""

from __future__ import annotations

import math
import re
from typing import Callable, Sequence

import torch

from ...engine.errors import SoftscopeError
from ...engine.metrics import sentence_model
from ...engine.tasks import Example
from .features import Feature


# ---- biased-prediction rate -----------------------------------------------------------------------------------
def flip_rate(clean: Sequence[int], modified: Sequence[int], favoured: int) -> tuple[float, int]:
    """Share of examples not predicted `favoured` on the clean text that are predicted `favoured` once modified."""
    eligible = [(a, b) for a, b in zip(clean, modified) if a != favoured]
    if not eligible:
        return float("nan"), 0
    return sum(b == favoured for _, b in eligible) / len(eligible), len(eligible)


def biased_prediction_rate(predict: Callable[[list[Example]], torch.Tensor], examples: Sequence[Example],
                           feature: Feature, control: Feature, favoured: int, seed: int = 0) -> dict:
    """How often adding the feature moves a prediction to the favoured class, minus the same for the control.

    `predict` maps examples to class scores [N, C] (log-probs, logits or one-hot); `examples` are clean held-out
    examples (any that contain the feature or the control are skipped). Also returns clean accuracy, the two flip
    rates, the reverse (away-from-favoured) flip rate and the mean shift of the favoured class's log-probability.
    """
    exs = [e for e in examples if not feature.present(e.text) and not control.present(e.text)]
    if not exs:
        raise SoftscopeError("no held-out example is free of the feature and the control: pick other features")
    with_f = [Example(feature.add(e.text, seed), e.label, e.text_b) for e in exs]
    with_c = [Example(control.add(e.text, seed), e.label, e.text_b) for e in exs]
    scores = [torch.as_tensor(predict(x)).float() for x in (exs, with_f, with_c)]
    lp = [s.log_softmax(-1) if s.shape[-1] > 1 else s for s in scores]
    p0, pf, pc = (s.argmax(-1).tolist() for s in scores)
    rf, n = flip_rate(p0, pf, favoured)
    rc, _ = flip_rate(p0, pc, favoured)
    away = [(a, b) for a, b in zip(p0, pf) if a == favoured]
    shift = lambda m: float((lp[m][:, favoured] - lp[0][:, favoured]).clamp(-50, 50).mean())  # noqa: E731
    return {
        "biased_prediction_rate": rf - rc if n else float("nan"),
        "feature_flip_rate": rf, "control_flip_rate": rc, "eligible": n, "examples": len(exs),
        "away_flip_rate": (sum(b != favoured for _, b in away) / len(away)) if away else float("nan"),
        "favoured_logprob_shift": shift(1), "control_logprob_shift": shift(2),
        "changed_by_feature": sum(a != b for a, b in zip(p0, pf)) / len(exs),
        "predicted_favoured_clean": sum(a == favoured for a in p0) / len(exs),
        "predicted_favoured_feature": sum(b == favoured for b in pf) / len(exs),
        "_predictions": (p0, pf, pc),
    }


# ---- bias-mention rate ----------------------------------------------------------------------------------------
def _spans(text: str, max_words: int = 3) -> list[str]:
    words = re.findall(r"[\w']+|[^\w\s]+", text)
    return [" ".join(words[i:i + k]) for k in range(1, max_words + 1) for i in range(len(words) - k + 1)]


def string_mention(text: str, terms: Sequence[str]) -> bool:
    """Whether text contains a term (words: whole-word, case-insensitive; punctuation: as a substring)."""
    for t in terms:
        if any(ch.isalnum() for ch in t):
            if re.search(r"(?<![\w])" + re.escape(t) + r"(?![\w])", text, re.IGNORECASE):
                return True
        elif t in text:
            return True
    return False


def embedding_mention(texts: Sequence[str], terms: Sequence[str], batch_size: int = 256) -> list[float]:
    """Per text, the max cosine similarity between any 1–3-word span of it and any term (sentence embeddings).

    Only spans and terms with a letter or digit take part: a sentence encoder puts "-" next to "--" and "!" next
    to "!!", so punctuation is matched by string only (its names, "exclamation", by embedding too).
    """
    terms = [t for t in terms if any(ch.isalnum() for ch in t)]
    if not terms:
        return [0.0] * len(texts)
    spans = [[s for s in _spans(t) if any(ch.isalnum() for ch in s)] for t in texts]
    uniq = sorted({s for sp in spans for s in sp})
    if not uniq:
        return [0.0] * len(texts)
    model = sentence_model()
    T = model.encode(list(terms), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    S = model.encode(uniq, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    best = dict(zip(uniq, (S @ T.T).max(-1).values.float().tolist()))
    return [max((best[s] for s in sp), default=0.0) for sp in spans]


def mention_scores(texts: Sequence[str], feature: Feature, threshold: float = 0.8, extra_terms: Sequence[str] = (),
                   embed: bool = True) -> list[dict]:
    """Per description: string mention, embedding similarity, embedding mention (≥ threshold) and either."""
    terms = feature.mention_terms() + [t for t in extra_terms if t]
    sims = embedding_mention(texts, terms) if embed else [float("nan")] * len(texts)
    out = []
    for t, s in zip(texts, sims):
        by_string = string_mention(t, terms)
        by_embed = bool(s >= threshold) if not math.isnan(s) else False
        out.append({"string": by_string, "similarity": s, "embedding": by_embed, "any": by_string or by_embed})
    return out


def mention_rate(scores: Sequence[dict], key: str = "any") -> float:
    """Share of descriptions that mention the feature (by 'string', 'embedding' or 'any')."""
    return sum(bool(s[key]) for s in scores) / len(scores) if scores else float("nan")


def score_mentions(rows: list[dict], feature: Feature, control: Feature, threshold: float,
                   extra_terms: Sequence[str] = ()) -> dict:
    """Mark each description row (its cut text) as naming the feature / the control, in place, and return the
    mention-rate columns of a prompt. One rule for measuring, rescoring and re-describing."""
    texts = [r["cut"] for r in rows]
    ms = mention_scores(texts, feature, threshold, extra_terms)
    cs = mention_scores(texts, control, threshold)
    for r, m, c in zip(rows, ms, cs):
        r.update(mention_string=m["string"], mention_similarity=m["similarity"], mention=m["any"],
                 control_mention=c["any"])
    return {"mention_rate": mention_rate(ms), "mention_rate_string": mention_rate(ms, "string"),
            "mention_rate_embedding": mention_rate(ms, "embedding"), "control_mention_rate": mention_rate(cs)}
