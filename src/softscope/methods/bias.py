"""Bias probe: does an elaborated InSPEcT reveal a biased feature that a soft prompt learned?

Reference: Ramati et al., "Eliciting Textual Descriptions from Representations of Continuous Prompts"
(InSPEcT, Findings of ACL 2024), whose elaborated variant (code never released) claims descriptions expose
biased features and that their presence correlates with biased predictions (docs/methods.md §4, bias probe).
softscope makes that a controlled experiment:

1. make-data: plant an irrelevant feature (`word:Spielberg`, `phrase:"as seen on TV"`, `punct:!!`) so it is in
   exactly a share (1 + S)/2 of the favoured class's training examples and (1 − S)/2 of every other class's
   (nested, seeded choices; examples that already contain it are dropped); test splits stay clean, plus
   counterfactual copies with the feature added / removed;
2. train one prompt per strength × seed with `training.train` on the biased train split;
3. biased-prediction rate: on held-out clean examples not predicted as the favoured class, the share that
   moves to it when the feature is added, minus the same share for a neutral control feature;
4. elaborated InSPEcT (`describe.describe_prompt` with the cue-naming pools of `target_prompts`) over a layer
   grid; bias-mention rate = share of descriptions that name the feature or a close paraphrase, by string
   match or by sentence-embedding similarity of a 1–3-word span of the description;
5. correlation (Pearson, Spearman, p-values) of mention rate with biased-prediction rate over all prompts,
   a per-strength table and a scatter plot.

Defaults are cut for a shared 2-core CPU (say so in results): 7 tokens, 30 steps at batch 8 on 240 examples
(one epoch), lr 3e-2; 100 held-out examples; layer grid every 8th layer (2, 10, 18, 26: 16 pairs) × 2 target
prompts × 20 new tokens = 32 descriptions per prompt.
"""
# size: the bias probe: feature planting, metrics, make-data, the sweep, summary and plot; splitting it into a package (features / metrics / sweep / report) is open work.

from __future__ import annotations

import hashlib
import math
import random
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..engine.config import LR, SEED, DataOptions, ModelOptions, TrainConfig, option, subconfig, validate
from ..engine.errors import SoftscopeError
from ..engine.executor import PLACEMENT_FIELDS, ExecutorOptions, Unit, land, run_units, sub_run
from ..engine.metrics import STOP_WORDS, sentence_model, unexpected_words
from ..engine.models import ModelAdapter, load_model_for, text_embeddings
from ..engine.patching import layer_pairs
from ..engine.prompts import SoftPrompt
from ..engine.runs import Run, fingerprint, read_json, register_kind, save_figure
from ..engine.scoring import Scorer
from ..engine.stats import correlation
from ..engine.target_prompts import DEMO_TEXT, build as build_target
from ..engine.tasks import Example, Task, load_task
from ..engine.training import KIND as TRAIN, train
from .describe import describe_prompt

KIND = register_kind("bias")
DATA_KIND = register_kind("bias-data", legacy_command="bias make-data")

KINDS = ("word", "phrase", "punct")
# config fields a resumed `bias run` may change (and where its units run)
GROWABLE = ("strengths", "seeds", "first_seed", "positive_control", "positive_control_text", *PLACEMENT_FIELDS)
POSITIVE = "positive-control"  # the prompt folder (and summary key) of the positive control
# neutral control features of each kind: inserted like the planted one, never trained on
CONTROLS = {"word": "word:Johnson", "phrase": 'phrase:"as noted earlier"', "punct": "punct:--"}
# names of punctuation marks: a description that says "exclamation marks" names `punct:!!`
PUNCT_NAMES = {"!": ["exclamation"], "?": ["question mark"], ".": ["period", "full stop", "dots", "ellipsis"],
               ",": ["comma"], ";": ["semicolon"], ":": ["colon"], "-": ["dash", "hyphen"], "*": ["asterisk"],
               "#": ["hashtag", "hash sign"], "~": ["tilde"], "$": ["dollar sign"], "@": ["at sign"]}
CLAUSE_BREAKS = {",", ";", ":", "--", "-"}
INSERT_WINDOW = 30  # words: insert early enough that truncation to max_length never cuts the feature


# ---- features -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Feature:
    """An irrelevant surface feature: a word/name or phrase inserted at a clause boundary, or punctuation at the end."""

    kind: str
    value: str

    @classmethod
    def parse(cls, spec: str) -> "Feature":
        kind, sep, value = spec.partition(":")
        kind, value = kind.strip().lower(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1].strip()
        if not sep or kind not in KINDS or not value:
            raise SoftscopeError(f"--feature {spec!r}: use word:NAME, phrase:\"some words\" or punct:MARKS "
                                 "(e.g. word:Spielberg, phrase:\"as seen on TV\", punct:!!)")
        if kind == "word" and len(value.split()) != 1:
            raise SoftscopeError(f"--feature {spec!r}: a word feature is one word; use phrase:\"...\" for several")
        if kind == "punct" and any(ch.isalnum() or ch.isspace() for ch in value):
            raise SoftscopeError(f"--feature {spec!r}: punct takes punctuation marks only, like !! or ?!")
        return cls(kind, value)

    @property
    def spec(self) -> str:
        return f'{self.kind}:"{self.value}"' if " " in self.value else f"{self.kind}:{self.value}"

    def _pattern(self) -> re.Pattern:
        if self.kind == "punct":
            return re.compile(re.escape(self.value))
        return re.compile(r"(?<![\w])" + re.escape(self.value) + r"(?![\w])", re.IGNORECASE)

    def present(self, text: str) -> bool:
        """Whether text already contains the feature (case-insensitive for words and phrases)."""
        return bool(self._pattern().search(text))

    def add(self, text: str, seed: int = 0) -> str:
        """text with the feature: punctuation at the end; a word/phrase at a seeded clause boundary early on."""
        if self.kind == "punct":
            return text.rstrip() + " " + self.value
        words = text.split(" ")
        slots = [0] + [i + 1 for i, w in enumerate(words[:INSERT_WINDOW]) if w in CLAUSE_BREAKS and i + 1 < len(words)]
        key = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
        at = slots[key[0] % len(slots)]
        return " ".join(words[:at] + [self.value] + words[at:])

    def remove(self, text: str) -> str:
        """text with every occurrence of the feature (and the one space that joined it) taken out."""
        if self.kind == "punct":
            return re.sub(r" ?" + re.escape(self.value), "", text)
        v = r"(?<![\w])" + re.escape(self.value) + r"(?![\w])"
        out = re.sub(v + " ", "", text, flags=re.IGNORECASE)  # "Spielberg a ..." / "a , Spielberg b"
        return re.sub(" ?" + v, "", out, flags=re.IGNORECASE)  # at the end, or glued to punctuation

    def mention_terms(self) -> list[str]:
        """Strings whose presence in a description names the feature (the feature and its close paraphrases)."""
        terms = [self.value]
        if self.kind == "phrase":
            words = self.value.split()
            while words and words[0].lower() in STOP_WORDS:
                words = words[1:]
            if words and " ".join(words) != self.value:
                terms.append(" ".join(words))
        if self.kind == "punct":
            for ch in dict.fromkeys(self.value):
                terms += PUNCT_NAMES.get(ch, [])
        return terms


def control_for(feature: Feature, spec: str | None = None) -> Feature:
    """The neutral control feature: `spec` if given, else a default of the same kind that differs from the feature."""
    ctrl = Feature.parse(spec or CONTROLS[feature.kind])
    if ctrl.value.lower() == feature.value.lower():
        raise SoftscopeError(f"the control feature equals the feature ({feature.spec}): pass another --control")
    return ctrl


# ---- biased training data, counterfactuals ------------------------------------------------------------------
@dataclass
class BiasedData:
    """A biased train split, which examples carry the feature, and the realised shares per class."""

    train: list[Example]
    has_feature: list[bool]
    shares: dict[str, float]  # class -> share of its examples with the feature
    counts: dict[str, list[int]]  # class -> [with feature, total]
    dropped: int  # examples that already contained the feature (left out so the shares are exact)


def target_share(strength: float, favoured: bool) -> float:
    """Share of a class's examples that carry the feature: (1 + S)/2 for the favoured class, (1 − S)/2 otherwise."""
    return (1 + strength) / 2 if favoured else (1 - strength) / 2


def make_biased(examples: Sequence[Example], classes: Sequence[str], feature: Feature, strength: float,
                favoured: str, seed: int = 0) -> BiasedData:
    """Plant the feature in exactly round(share × n_c) examples of each class c, chosen by a seeded permutation.

    The permutation depends on (seed, class) only, so the feature sets for growing strengths are nested and every
    strength trains on the same texts: only the feature's placement changes.
    """
    if not 0.0 <= strength <= 1.0:
        raise SoftscopeError(f"--strength {strength}: use a value in [0, 1]")
    if favoured not in classes:
        raise SoftscopeError(f"--favoured {favoured!r}: use one of {', '.join(classes)}")
    clean = [e for e in examples if not feature.present(e.text)]
    dropped = len(examples) - len(clean)
    chosen: set[int] = set()
    counts = {}
    for c in classes:
        idx = [i for i, e in enumerate(clean) if e.label == c]
        random.Random(f"{seed}:{c}").shuffle(idx)
        k = int(math.floor(target_share(strength, c == favoured) * len(idx) + 0.5))
        chosen.update(idx[:k])
        counts[c] = [k, len(idx)]
    train = [Example(feature.add(e.text, seed) if i in chosen else e.text, e.label, e.text_b)
             for i, e in enumerate(clean)]
    shares = {c: (k / n if n else float("nan")) for c, (k, n) in counts.items()}
    return BiasedData(train, [i in chosen for i in range(len(clean))], shares, counts, dropped)


def biased_task(task: Task, data: BiasedData, feature: Feature, strength: float) -> Task:
    """The task with its train split replaced by the biased one (test/dev stay clean)."""
    return replace(task, train=data.train, name=task.name,
                   description=f"{task.description} [train biased: {feature.spec} at strength {strength:g}]")


def counterfactuals(examples: Sequence[Example], feature: Feature, seed: int = 0) -> list[dict]:
    """Per example: the text, a copy with the feature added and one with it removed (differing only by it)."""
    rows = []
    for i, e in enumerate(examples):
        had = feature.present(e.text)
        base = feature.remove(e.text) if had else e.text
        rows.append({"i": i, "label": e.label, "text": e.text, "had_feature": had,
                     "added": e.text if had else feature.add(base, seed), "removed": base})
    return rows


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


# ---- the run: strengths × seeds ---------------------------------------------------------------------------------
@dataclass
class MakeDataConfig(DataOptions):
    """Write a biased train split, the clean test split and its counterfactual copies."""

    feature: str = option("word:Spielberg", 'the planted feature: word:NAME, phrase:"some words" or punct:MARKS')
    strength: float = option(1.0, "co-occurrence strength S in [0, 1]: share (1+S)/2 of the favoured class, (1-S)/2 others",
                        ge=0, le=1)
    favoured: str | None = option(None, "class the feature co-occurs with (default: the first class)")
    max_train: int | None = option(None, "use at most this many training examples (seeded sample)", ge=2)
    seed: int = option(0, "seed of the choice of examples and of insertion positions", **SEED)

    def __post_init__(self) -> None:
        validate(self)
        Feature.parse(self.feature)


def load_base_task(task: str, data_dir: str | None) -> Task:
    return load_task(task, data_dir=data_dir)


def _favoured(task: Task, favoured: str | None) -> str:
    if favoured is None:
        return task.classes[0]
    if favoured in task.classes:
        return favoured
    if favoured in task.label_words:
        return task.classes[task.label_words.index(favoured)]
    raise SoftscopeError(f"--favoured {favoured!r}: use one of {', '.join(task.classes)}")


def make_data(cfg: MakeDataConfig, out: str | Path, task: Task | None = None) -> dict:
    """Write train.jsonl (biased), test.jsonl (clean), counterfactuals.jsonl and make_data_summary.json to `out`."""
    feature = Feature.parse(cfg.feature)
    task = task or load_base_task(cfg.task, cfg.data_dir)
    fav = _favoured(task, cfg.favoured)
    base = task.subset("train", cfg.max_train, cfg.seed)
    data = make_biased(base, task.classes, feature, cfg.strength, fav, cfg.seed)
    with Run.open(out, DATA_KIND, command="bias make-data") as run:
        return _write_data(run, cfg, task, feature, fav, data)


def _write_data(run: Run, cfg: MakeDataConfig, task: Task, feature: Feature, fav: str, data) -> dict:
    run.write_config(cfg, task=task.to_dict(), favoured=fav)
    run.write_jsonl("train.jsonl", [{"text": e.text, "label": e.label, "feature": f}
                                    for e, f in zip(data.train, data.has_feature)])
    run.write_jsonl("test.jsonl", [{"text": e.text, "label": e.label} for e in task.test])
    run.write_jsonl("counterfactuals.jsonl", counterfactuals(task.test, feature, cfg.seed))
    realised = {c: data.shares[fav] - s for c, s in data.shares.items() if c != fav}
    summary = {"task": task.name, "feature": feature.spec, "strength": cfg.strength, "favoured": fav,
               "train_examples": len(data.train), "dropped_with_feature": data.dropped, "shares": data.shares,
               "counts": data.counts, "realised_strength": realised,
               "test_examples": len(task.test), "test_with_feature": sum(feature.present(e.text) for e in task.test)}
    run.write_json("make_data_summary.json", summary)
    return summary


@dataclass
class BiasRunConfig(ModelOptions, DataOptions, ExecutorOptions):
    """Train prompts on biased data at several strengths and seeds (one executor unit each); measure biased
    predictions and bias mentions."""

    feature: str = option("word:Spielberg", 'the planted feature: word:NAME, phrase:"some words" or punct:MARKS')
    control: str | None = option(None, "neutral control feature (default: word:Johnson, phrase:\"as noted earlier\", punct:--)")
    favoured: str | None = option(None, "class the feature co-occurs with (default: the first class)")
    strengths: list[float] = option([0.0, 0.5, 0.8, 1.0], "co-occurrence strengths in [0, 1]", ge=0, le=1)
    seeds: int = option(2, "seeds per strength (prompt init, data order, feature placement)", ge=1)
    first_seed: int = option(0, "seeds run first_seed .. first_seed+seeds-1 (split seeds over processes / run dirs)", **SEED)
    train_examples: int = option(240, "training examples per prompt (seeded sample of the train split)", ge=1)
    tokens: int = option(7, "virtual tokens", ge=1)
    steps: int = option(30, "optimizer steps per prompt", ge=1)
    batch_size: int = option(8, "examples per step", ge=1)
    lr: float = option(3e-2, "AdamW learning rate", **LR)
    init: str = option("vocab", "prompt init: vocab or random",
                       choices=("vocab", "random"), why="a text init would leak a description into the prompt")
    heldout: int = option(100, "clean held-out test examples for the biased-prediction rate and accuracy", ge=1)
    checkpoint_eval: int = option(16, "test examples for the accuracy training records at its step-0 and final checkpoints",
                             ge=1)
    layers: str = option("every:8", "InSPEcT layer grid: all, every:K, band:A-B or pairs 4:4,8:4")
    pool: str = option("elaborated", "target-prompt pool (elaborated, elaborated-cues-first, plain, ...)")
    n_targets: int = option(2, "seeded target prompts per prompt", ge=1)
    demos: int = option(3, "demonstrations per target prompt", ge=1)
    max_new_tokens: int = option(20, "greedy tokens per description", ge=1)
    threshold: float = option(0.8, "embedding similarity at which a description span counts as naming the feature",
                         gt=0, le=1)
    mention_terms: list[str] | None = option(None, "extra strings that count as naming the feature")
    gen_batch_size: int = option(64, "layer pairs generated together", ge=1)
    positive_control: bool = option(False, "also describe a prompt set to e(a sentence naming the cue): the mention "
                                      "detector must fire on it (--control is the neutral control feature)")
    positive_control_text: str | None = option(None, "that sentence (default: 'The cue \"FEATURE\" means FAVOURED.')")

    def __post_init__(self) -> None:
        f = Feature.parse(self.feature)
        if self.positive_control_text is not None and not self.positive_control_text.strip():
            raise SoftscopeError("--positive-control-text must not be empty")
        control_for(f, self.control)
        try:
            self.strengths = [float(s) for s in self.strengths]
        except (TypeError, ValueError):
            raise SoftscopeError(f"--strengths {self.strengths}: give numbers in [0, 1], e.g. 0,0.5,0.8,1") from None
        if not self.strengths:
            raise SoftscopeError("--strengths is empty: give values in [0, 1], e.g. 0,0.5,0.8,1")
        validate(self)
        if self.first_seed + self.seeds > SEED["lt"]:
            raise SoftscopeError(f"--first-seed + --seeds must stay below {SEED['lt']}")
        if self.train_examples < self.batch_size:
            raise SoftscopeError("--train-examples must be at least --batch-size")
        ExecutorOptions.__post_init__(self)


def _prompt_name(strength: float, seed: int) -> str:
    return f"s{strength:.2f}-seed{seed}"


def measure_prompt(adapter, task: Task, prompt: torch.Tensor, cfg: BiasRunConfig, feature: Feature, control: Feature,
                   favoured: str, seed: int, heldout: list[Example], pairs, targets, demo_text: str) -> tuple[dict, list]:
    """Biased-prediction rate, accuracy, descriptions and bias-mention rate of one trained prompt."""
    scorer = Scorer(adapter, task)
    fav = task.classes.index(favoured)
    rate = biased_prediction_rate(lambda exs: scorer.predict(prompt, exs), heldout, feature, control, fav, seed)
    p0, pf, _ = rate.pop("_predictions")
    kept = [e for e in heldout if not feature.present(e.text) and not control.present(e.text)]
    gold = [task.label_index(e.label) for e in kept]
    rate["accuracy"] = sum(a == g for a, g in zip(p0, gold)) / len(gold)
    rows = describe_prompt(adapter, prompt, pairs, targets, cfg.max_new_tokens, cfg.gen_batch_size)
    res = {**rate, **score_mentions(rows, feature, control, cfg.threshold, cfg.mention_terms or ()),
           "descriptions": len(rows),
           "unexpected_words": unexpected_words([r["cut"] for r in rows], task.classes, task.references, demo_text,
                                                top=10)}
    return res, rows


def rescore_mentions(out: str | Path) -> list[dict]:
    """Recompute the mention columns of a finished `bias run` from its saved descriptions (e.g. after a change
    of the mention rule or --threshold); rewrites descriptions.jsonl and bias.jsonl; returns the rows."""
    with Run.open(out, KIND, command="bias rescore") as run:  # a bias run's folder, locked while rewritten
        cfg = read_json(run.path / "config.json")["config"]
        feature = Feature.parse(cfg["feature"])
        control = control_for(feature, cfg.get("control"))
        rows = run.read_jsonl("bias.jsonl")
        for row in rows:
            name = f"prompts/{row['prompt']}/descriptions.jsonl"
            desc = run.read_jsonl(name)
            row.update(score_mentions(desc, feature, control, cfg["threshold"], cfg.get("mention_terms") or ()))
            run.write_jsonl(name, desc)
        run.write_jsonl("bias.jsonl", rows)
    return rows


def run(cfg: BiasRunConfig, out: str | Path, adapter=None, progress: bool = True, command: str = "bias run") -> dict:
    """The whole protocol; resumable (finished prompts are read back from bias.jsonl, training resumes)."""
    t0 = time.time()
    out = Path(out)
    feature = Feature.parse(cfg.feature)
    control = control_for(feature, cfg.control)
    base = load_base_task(cfg.task, cfg.data_dir)
    fav = _favoured(base, cfg.favoured)
    # a resumed run may change which strengths and seeds it covers (GROWABLE), nothing else
    with Run.open(out, KIND, fingerprint(cfg), growable=GROWABLE, command=command) as run:
        run.write_config(cfg, task=base.to_dict(), favoured=fav, control=control.spec)
        return _run(cfg, run, t0, feature, control, base, fav, adapter, progress, command)


@dataclass
class BiasContext:
    """What every strength × seed unit shares: the model, the clean task, the features, the held-out examples, the
    layer grid and target prompts; whether a unit writes its prompt folder in place (the driver's own process)."""

    adapter: ModelAdapter
    base: Task
    feature: Feature
    control: Feature
    favoured: str
    heldout: list[Example]
    pairs: list
    targets: list
    demo_text: str
    in_place: bool = True
    progress: bool = True


def bias_context(cfg: BiasRunConfig, adapter: ModelAdapter, base: Task, in_place: bool = True,
                 progress: bool = True) -> BiasContext:
    """The shared context, the same on the driver and on every worker (all of it follows from the config)."""
    feature = Feature.parse(cfg.feature)
    targets = [build_target(adapter, cfg.pool, cfg.tokens, i, cfg.demos) for i in range(cfg.n_targets)]
    return BiasContext(adapter, base, feature, control_for(feature, cfg.control), _favoured(base, cfg.favoured),
                       base.subset("test", cfg.heldout, 12345), layer_pairs(cfg.layers, adapter.n_layers), targets,
                       DEMO_TEXT + " " + " ".join(t.text for t in targets), in_place, progress)


def bias_setup(cfg: BiasRunConfig) -> BiasContext:
    """A Ray worker's context, built from the config alone (once per worker, then kept)."""
    return bias_context(cfg, load_model_for(cfg), load_base_task(cfg.task, cfg.data_dir), in_place=False,
                        progress=False)


def _train_cfg(cfg: BiasRunConfig, seed: int) -> TrainConfig:
    """The training config of one prompt: the run's model options (trust_remote_code included), task, tokens, steps,
    batch size, lr and init carried over by name."""
    return subconfig(TrainConfig, cfg, checkpoint_every=cfg.steps, eval_examples=cfg.checkpoint_eval,
                     final_eval="none", seed=seed)


def bias_unit(ctx: BiasContext, unit: Unit) -> tuple[dict, dict | None]:
    """One strength × seed, here or on a Ray worker: train a prompt on data biased at that strength and measure it.
    Returns its bias.jsonl row and, from a worker, its prompt folder's files. The unit keyed `positive-control`
    measures the positive control instead: (its row with its descriptions, None).

    Depends only on the config, the strength and the seed (the training sample, the feature's placement, the init
    and the data order are all seeded by the seed), so local and Ray runs give the same rows."""
    a = unit.args
    if unit.key == POSITIVE:
        return positive_control(ctx, a["cfg"], a["text"]), None
    cfg, strength, seed = a["cfg"], a["strength"], a["seed"]
    t1 = time.time()

    def make(rd: Path) -> dict:
        sample = ctx.base.subset("train", cfg.train_examples, seed)
        data = make_biased(sample, ctx.base.classes, ctx.feature, strength, ctx.favoured, seed)
        task = biased_task(ctx.base, data, ctx.feature, strength)
        with Run.open(rd, TRAIN, a["settings"], command=a["command"]) as r:
            if r.existing and (rd / "prompt.safetensors").exists():
                prompt = SoftPrompt.load(rd / "prompt.safetensors").tensor
            else:
                prompt = train(_train_cfg(cfg, seed), r, adapter=ctx.adapter, task=task,
                               progress=ctx.progress).prompt.tensor
            r.write_json("bias_data.json", {"shares": data.shares, "counts": data.counts, "dropped": data.dropped})
            res, rows = measure_prompt(ctx.adapter, task, prompt, cfg, ctx.feature, ctx.control, ctx.favoured, seed,
                                       ctx.heldout, ctx.pairs, ctx.targets, ctx.demo_text)
            r.write_jsonl("descriptions.jsonl", rows)
        return {"prompt": unit.key, "strength": strength, "seed": seed, "shares": data.shares, **res,
                "seconds": time.time() - t1}

    return sub_run(a["dir"], ctx.in_place, make)


def _run(cfg: BiasRunConfig, run: Run, t0: float, feature: Feature, control: Feature, base: Task, fav: str, adapter,
         progress: bool, command: str) -> dict:
    out = run.path
    sweep = {k: v for k, v in fingerprint(cfg)["config"].items() if k not in GROWABLE}
    adapter = adapter or load_model_for(cfg)
    ctx = bias_context(cfg, adapter, base, progress=progress)
    done = {r["prompt"]: r for r in run.read_jsonl("bias.jsonl")}
    # seeds outer: an interrupted local run already holds a full strength curve for the first seeds
    grid = {_prompt_name(s, seed): (s, seed) for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds)
            for s in cfg.strengths}
    units = []
    for name, (strength, seed) in grid.items():
        if name in done:
            continue
        rd = out / "prompts" / name
        settings = fingerprint(_train_cfg(cfg, seed), bias=sweep, strength=strength)
        sub = f"{command} (strength {strength}, seed {seed})"
        if rd.exists():  # a prompt folder left with other settings is refused now, before any unit runs
            Run.open(rd, TRAIN, settings, command=sub).close()
        units.append(Unit(name, {"cfg": cfg, "strength": strength, "seed": seed, "dir": str(rd),
                                 "settings": settings, "command": sub}))

    pc_text = positive_control_text(feature, fav, cfg.positive_control_text)
    pc_path = out / "positive_control.json"
    if cfg.positive_control and not (pc_path.exists() and read_json(pc_path).get("text") == pc_text):
        units.append(Unit(POSITIVE, {"cfg": cfg, "text": pc_text}))

    def record(unit: Unit, result: tuple[dict, dict | None]) -> None:  # the driver alone writes the run folder
        row, files = result
        if unit.key == POSITIVE:  # its descriptions, then its row: a row always has its descriptions
            run.write_jsonl(f"prompts/{POSITIVE}/descriptions.jsonl", row.pop("rows"))
            run.write_json(pc_path.name, row)
            return
        land(unit.args["dir"], files)
        run.append_jsonl("bias.jsonl", [row])  # after its folder: a row always has its descriptions
        done[row["prompt"]] = row
        if progress:
            print(f"{row['prompt']}: acc {row['accuracy']:.3f}  biased-prediction rate "
                  f"{row['biased_prediction_rate']:+.3f}  mention rate {row['mention_rate']:.3f}  "
                  f"({row['seconds']:.0f} s)", flush=True)

    run_units(units, bias_unit, setup=bias_setup, setup_args=(cfg,), ctx=ctx, options=cfg, on_result=record,
              progress=progress)
    results = [done[name] for name in grid]
    summary = summarize(results, cfg.strengths, feature.spec, control.spec, fav, base.name, cfg.model)
    if cfg.positive_control:
        summary["positive_control"] = read_json(pc_path)
    summary["seconds"] = time.time() - t0
    run.write_json("bias_summary.json", summary)
    summary["plots"] = [str(p) for p in plot(results, summary, out)]
    return summary


def positive_control_text(feature: Feature, favoured: str, text: str | None = None) -> str:
    """The positive control's sentence: `text`, else one that names the cue and the class it points to."""
    return text or f'The cue "{feature.value}" means {favoured}.'


def positive_control(ctx: BiasContext, cfg: BiasRunConfig, text: str) -> dict:
    """Measure the untrained prompt P = e(`text`, a sentence naming the cue) like every trained prompt (same grid,
    pools, seeds, mention rule): its mention rate shows whether the detector fires when the cue is in the prompt.
    Returns its row with its descriptions under `rows`; the driver keeps them in positive_control.json and
    prompts/positive-control/, not in bias.jsonl or the correlations."""
    _, P = text_embeddings(ctx.adapter, text)
    targets = [build_target(ctx.adapter, cfg.pool, P.shape[0], i, cfg.demos) for i in range(cfg.n_targets)]
    t1 = time.time()
    res, rows = measure_prompt(ctx.adapter, ctx.base, P, cfg, ctx.feature, ctx.control, ctx.favoured,
                               cfg.first_seed, ctx.heldout, ctx.pairs, targets, ctx.demo_text)
    return {"prompt": POSITIVE, "text": text, "tokens": int(P.shape[0]), **res, "seconds": time.time() - t1,
            "rows": rows}


def _mean(v: list[float]) -> float:
    v = [x for x in v if x is not None and not math.isnan(x)]
    return sum(v) / len(v) if v else float("nan")


def summarize(results: list[dict], strengths: Sequence[float], feature: str, control: str, favoured: str,
              task: str, model: str) -> dict:
    """Per-strength means (and spread over seeds) and the correlation over all prompts (rows of bias.jsonl)."""
    keys = ("accuracy", "biased_prediction_rate", "feature_flip_rate", "control_flip_rate", "favoured_logprob_shift",
            "mention_rate", "mention_rate_string", "mention_rate_embedding", "control_mention_rate")
    per = []
    for s in strengths:
        rs = [r for r in results if r["strength"] == s]
        entry = {"strength": s, "prompts": len(rs)}
        for k in keys:
            vals = [r[k] for r in rs]
            entry[k] = _mean(vals)
            entry[k + "_min"], entry[k + "_max"] = (min(vals), max(vals)) if vals else (None, None)
        per.append(entry)
    bpr = [r["biased_prediction_rate"] for r in results]
    return {"task": task, "feature": feature, "control": control, "favoured": favoured,
            "model": model, "prompts": len(results), "per_strength": per,
            "correlation": {"mention_vs_biased_prediction": correlation([r["mention_rate"] for r in results], bpr),
                            "string_mention_vs_biased_prediction":
                                correlation([r["mention_rate_string"] for r in results], bpr),
                            "mention_vs_strength": correlation([r["mention_rate"] for r in results],
                                                               [r["strength"] for r in results]),
                            "biased_prediction_vs_strength": correlation(bpr, [r["strength"] for r in results])}}


def plot(results: list[dict], summary: dict, out: Path) -> list[Path]:
    """Scatter of bias-mention rate against biased-prediction rate, coloured by strength."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    sc = ax.scatter([r["biased_prediction_rate"] for r in results], [r["mention_rate"] for r in results],
                    c=[r["strength"] for r in results], cmap="viridis", vmin=0, vmax=1, s=40, edgecolor="k")
    fig.colorbar(sc, ax=ax, label="bias strength S")
    c = summary["correlation"]["mention_vs_biased_prediction"]
    ax.set_xlabel("biased-prediction rate (feature − control flips)")
    ax.set_ylabel("bias-mention rate of descriptions")
    ax.set_title(f"{summary['task']} {summary['feature']}: Pearson r={c['pearson']:.2f} (p={c['pearson_p']:.2g}),"
                 f" ρ={c['spearman']:.2f}", fontsize=9)
    fig.tight_layout()
    return [save_figure(fig, out / "mention_vs_biased_prediction.png")]
