"""Is a reading of a soft prompt an interpretation? Faithfulness and scrutability, for any discrete reading.

Patel et al. 2025, "Towards Interpretable Soft Prompts" (docs/methods.md §6). A reading D of a soft prompt P (its
nearest-token projection, a PEZ hard prompt, an InSPEcT description, any text) is
- **faithful** when it behaves like P: fed to the same frozen model in P's place (its token embeddings become
  the prompt tensor, so the same Scorer scores both), it makes the same predictions on held-out inputs. We report
  prediction agreement, the accuracy gap, and the mean KL(p_P ‖ p_D) between the class distributions;
- **scrutable** when a person can read it. Proxies: perplexity under the LM (after the document start) and the
  share of its words found in a dictionary (the 50,000 most frequent English words of `wordfreq`).
A reading is interpretable when it passes both thresholds (defaults: agreement ≥ 0.9, perplexity ≤ 1000,
dictionary share ≥ 0.7; all configurable).
"""

from __future__ import annotations

import functools
import math
import re
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from ..engine.carry import model_for, resolve
from ..engine.config import SEED, PromptModelOptions, ReadOptions, option, validate
from ..engine.errors import SoftscopeError
from ..engine.metrics import perplexity
from ..engine.models import DEFAULT_MODEL, ModelAdapter, load_model
from ..engine.projection import hard_ids, project
from ..engine.prompts import SoftPrompt
from ..engine.runs import Run, register_kind
from ..engine.scoring import Scorer
from ..engine.stats import compare_paired, interval_of
from .pez import PezConfig, run_pez

KIND = register_kind("interpret")


@dataclass
class InterpretConfig(PromptModelOptions, ReadOptions):
    """Faithfulness and scrutability of a discrete reading of a soft prompt (task settings: the prompt's own)."""

    reading: str = option("projection", "projection[:l2|cos|dot], pez (a PEZ fit started at the prompt, or the "
                     "projection of a PEZ run), pez:RUN_DIR, text:STRING or ids:1,2,3")
    pez_steps: int = option(30, "steps of the PEZ fit for --reading pez on a prompt that is not a PEZ run", ge=0)
    examples: int = option(300, "held-out test examples for faithfulness (seeded subset; 0 = all)", ge=0)
    min_agreement: float = option(0.9, "faithful when prediction agreement is at least this", ge=0, le=1)
    max_perplexity: float = option(1000.0, "scrutable when LM perplexity is at most this ...", gt=0)
    min_dictionary_share: float = option(0.7, "... and at least this share of its words are dictionary words", ge=0, le=1)
    eval_batch_size: int = option(32, "batch size for evaluation", ge=1)
    seed: int = option(0, "seed of the example subset", **SEED)

    def __post_init__(self) -> None:
        validate(self)
        kind, _, arg = self.reading.partition(":")
        if kind not in ("projection", "pez", "text", "ids"):
            raise SoftscopeError(f"--reading {self.reading!r}: use projection[:metric], pez[:RUN_DIR], text:... or ids:...")
        if kind == "ids":
            parse_ids(arg)  # syntax and sign now; the vocabulary bound once the model is loaded


def parse_ids(arg, vocab_size: int | None = None) -> list[int]:
    """Token ids of `--reading ids:1,2,3` (or a list of ids): non-negative integers, below vocab_size when known."""
    if not isinstance(arg, str):
        arg = ",".join(str(int(i)) for i in arg)
    try:
        ids = [int(x) for x in arg.replace(" ", "").split(",") if x]
    except ValueError:
        raise SoftscopeError(f"--reading ids:{arg}: give comma-separated integers") from None
    if not ids:
        raise SoftscopeError("--reading ids: is empty: give token ids after 'ids:', e.g. ids:12,7")
    bad = [i for i in ids if i < 0 or (vocab_size is not None and i >= vocab_size)]
    if bad:
        top = f"0..{vocab_size - 1}" if vocab_size is not None else "0 or more"
        raise SoftscopeError(f"--reading ids:{arg}: token id {bad[0]} is outside the vocabulary ({top})")
    return ids


# ---- scrutability ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def dictionary() -> frozenset[str]:
    """The 50,000 most frequent English words of wordfreq (lower-case)."""
    try:
        from wordfreq import top_n_list
    except ImportError:
        raise SoftscopeError("the dictionary-word share needs wordfreq: run `pip install wordfreq`") from None
    return frozenset(top_n_list("en", 50000))


def dictionary_share(text: str) -> tuple[float, list[str]]:
    """Share of the whitespace-separated words of text that are dictionary words (punctuation-only chunks count
    as non-words; surrounding punctuation is stripped). Returns (share, the words that failed)."""
    chunks = text.split()
    if not chunks:
        return 0.0, []
    words = dictionary()
    bad = []
    for c in chunks:
        w = re.sub(r"^[^\w]+|[^\w]+$", "", c.lower())
        if not (w and w in words):
            bad.append(c)
    return 1 - len(bad) / len(chunks), bad


def scrutability(adapter: ModelAdapter, ids: list[int]) -> dict:
    """Perplexity of the reading's tokens under the LM and its dictionary-word share."""
    text = adapter.decode(ids)
    share, bad = dictionary_share(text)
    return {"perplexity": perplexity(adapter, ids) if ids else float("nan"), "dictionary_share": share,
            "non_dictionary_words": bad}


# ---- faithfulness ---------------------------------------------------------------------------------------
def faithfulness(lp_prompt: torch.Tensor, lp_reading: torch.Tensor, gold: torch.Tensor) -> dict:
    """Agreement, accuracies, accuracy gap and mean KL(p_prompt ‖ p_reading) from class log-likelihoods [N, C],
    with 95% Wilson intervals and a paired test of the gap (exact McNemar: both are scored on the same examples)."""
    a = lp_prompt.float().log_softmax(-1)  # distribution over the classes only
    b = lp_reading.float().log_softmax(-1)
    pa, pb = a.argmax(-1), b.argmax(-1)
    acc_a = float((pa == gold).float().mean())
    acc_b = float((pb == gold).float().mean())
    n = len(gold)
    agree = float((pa == pb).float().mean()) if n else float("nan")
    return {"agreement": agree, "prompt_accuracy": acc_a, "reading_accuracy": acc_b,
            "accuracy_gap": acc_a - acc_b, "kl": float((a.exp() * (a - b)).sum(-1).mean()), "examples": n,
            "agreement_ci95": interval_of(agree, n), "prompt_accuracy_ci95": interval_of(acc_a, n),
            "reading_accuracy_ci95": interval_of(acc_b, n),
            "paired": compare_paired((pa == gold).float().tolist(), (pb == gold).float().tolist())}


def reading_ids(adapter: ModelAdapter, soft_prompt: SoftPrompt, reading) -> tuple[list[int], str]:
    """Token ids of a reading: ids, text, 'projection[:metric]', 'pez:RUN_DIR' / 'pez' (a PEZ run's hard prompt)."""
    if isinstance(reading, (list, tuple)) or torch.is_tensor(reading):
        return parse_ids(reading, adapter.vocab_size), "ids"
    kind, _, arg = str(reading).partition(":")
    if kind == "text":
        ids = adapter.encode(arg)
        if not ids:
            raise SoftscopeError("--reading text: is empty: give the text after 'text:'")
        return ids, "text"
    if kind == "ids":
        return parse_ids(arg, adapter.vocab_size), "ids"
    if kind == "projection":
        return project(adapter, soft_prompt.tensor, arg or "cos", top_k=1).ids, f"projection:{arg or 'cos'}"
    if kind == "pez":  # the final projection of a PEZ run: the reading of its continuous prompt
        run = Path(arg) if arg else Path(soft_prompt.extra.get("run", ""))
        if not (run / "prompt.safetensors").exists() or not (run / "prompt_continuous.safetensors").exists():
            raise SoftscopeError(f"{run} is not a PEZ run (no prompt.safetensors + prompt_continuous.safetensors): "
                                 "pass --reading pez:<a PEZ run dir, e.g. runs/pez/w-0>")
        return hard_ids(adapter, SoftPrompt.load(run / "prompt.safetensors").tensor), f"pez:{run}"
    return adapter.encode(str(reading)), "text"


def interpret_reading(adapter: ModelAdapter, task, soft_prompt: SoftPrompt | torch.Tensor, reading,
                      examples=None, n_examples: int = 300, seed: int = 0, max_length: int = 80,
                      batch_size: int = 32, min_agreement: float = 0.9, max_perplexity: float = 1000.0,
                      min_dictionary_share: float = 0.7, soft_logprobs: torch.Tensor | None = None,
                      verbalizer: str = "auto", placement: str | None = None) -> dict:
    """The interpretability report of one reading of a soft prompt (a dict, JSON-ready).

    `reading` is text, token ids, or 'projection[:metric]' / 'pez:RUN' / 'text:...' / 'ids:...'. The reading's
    token embeddings replace the soft prompt before the text, so both are scored by the same Scorer on the same
    held-out examples (`examples`, else a seeded subset of n_examples test examples). Pass `soft_logprobs`
    (class log-likelihoods of the soft prompt on those examples) to score several readings of one prompt cheaply.
    """
    sp = soft_prompt if isinstance(soft_prompt, SoftPrompt) else SoftPrompt(tensor=soft_prompt)
    sp.check_width(adapter.width, adapter.name)
    ids, kind = reading_ids(adapter, sp, reading)
    if not ids:
        raise SoftscopeError("the reading has no tokens")
    examples = examples if examples is not None else task.subset("test", n_examples or None, seed)
    scorer = Scorer(adapter, task, max_length=max_length, verbalizer=verbalizer, placement=placement or sp.placement)
    scorer.check_fits(max(len(ids), sp.n_tokens), examples, option=None)
    gold = torch.tensor([r.label for r in scorer.rows(examples)])
    with torch.no_grad():
        lp_soft = soft_logprobs if soft_logprobs is not None else scorer.predict(sp.tensor, examples, batch_size)
        lp_read = scorer.predict(adapter.embed(torch.tensor(ids)), examples, batch_size)
    faith = faithfulness(lp_soft, lp_read, gold)
    scrut = scrutability(adapter, ids)
    text = adapter.decode(ids)
    faithful = faith["agreement"] >= min_agreement
    scrutable = (not math.isnan(scrut["perplexity"]) and scrut["perplexity"] <= max_perplexity
                 and scrut["dictionary_share"] >= min_dictionary_share)
    return {"reading": kind, "text": text, "ids": ids, "tokens": len(ids),
            "truncated": scorer.truncated(examples), "max_length": max_length,
            "text_roundtrip": adapter.encode(text) == ids,  # does the decoded text re-tokenise to the same ids?
            "faithfulness": faith, "scrutability": scrut,
            "thresholds": {"min_agreement": min_agreement, "max_perplexity": max_perplexity,
                           "min_dictionary_share": min_dictionary_share},
            "faithful": faithful, "scrutable": scrutable, "interpretable": faithful and scrutable}


def interpret(cfg: InterpretConfig, prompt_path: str | Path, out: str | Path | None = None,
              adapter: ModelAdapter | None = None, task=None) -> dict:
    """The report for one prompt file and the reading named by cfg.reading; written to `out` if given.

    The task, template, label words, max length and placement are the prompt's own (engine.carry) unless cfg
    overrides them; overrides are listed in the report."""
    with Run.open(out, KIND) if out else nullcontext() as run:  # lock and check the folder before any work
        return _interpret(cfg, prompt_path, run, adapter, task)


def _interpret(cfg: InterpretConfig, prompt_path, run, adapter, task) -> dict:
    out = run.path if run else None
    sp = SoftPrompt.load(prompt_path)
    if Path(prompt_path).is_dir() and (Path(prompt_path) / "prompt_continuous.safetensors").exists():
        # a PEZ run: the soft prompt is the continuous one, the reading defaults to the run's hard prompt
        sp = SoftPrompt.load(Path(prompt_path) / "prompt_continuous.safetensors")
        sp.extra["run"] = str(prompt_path)
    overrides: list[dict] = []
    if adapter is None:
        name, overrides = model_for(sp, cfg.model)
        adapter = load_model(name or DEFAULT_MODEL, device=cfg.device, dtype=cfg.dtype,
                             trust_remote_code=cfg.trust_remote_code)
    if task is None:
        reading_cfg = resolve(sp, cfg.given(), cfg.allow_other_task, what=str(prompt_path))
        task, overrides = reading_cfg.task, overrides + reading_cfg.overrides
        settings = reading_cfg.settings
    else:  # a task object from the caller: the prompt's scoring settings, cfg's overrides
        settings = {**sp.settings, **{k: v for k, v in cfg.given().items() if k in ("max_length", "verbalizer")}}
        sp.check_task(task, cfg.allow_other_task)
    reading = cfg.reading
    if reading == "pez" and not (Path(sp.extra.get("run", "")) / "prompt_continuous.safetensors").exists():
        reading = _pez_fit(cfg, sp, adapter, task, Path(out) if out else None, settings)
    rep = interpret_reading(adapter, task, sp, reading, n_examples=cfg.examples, seed=cfg.seed,
                            max_length=settings.get("max_length") or 80, batch_size=cfg.eval_batch_size,
                            min_agreement=cfg.min_agreement, max_perplexity=cfg.max_perplexity,
                            min_dictionary_share=cfg.min_dictionary_share,
                            verbalizer=settings.get("verbalizer") or "auto", placement=sp.placement)
    rep = {"prompt": str(prompt_path), "model": adapter.name, "task": task.name, **rep, "overrides": overrides}
    if reading != cfg.reading:
        rep["reading"] = f"pez fit from the prompt ({cfg.pez_steps} steps)"
    if run:
        run.write_config(cfg, prompt=str(Path(prompt_path).resolve()), overrides=overrides)
        run.write_json("interpret_summary.json", rep)
        run.write_jsonl("interpret.jsonl", [rep])
    return rep


def _pez_fit(cfg: InterpretConfig, sp: SoftPrompt, adapter: ModelAdapter, task, out: Path | None,
             settings: dict) -> list[int]:
    """A PEZ reading of any soft prompt: PEZ (w = 0) started at the prompt itself; returns the hard prompt's ids."""
    pcfg = PezConfig(model=adapter.name, task=task.origin or task.name, tokens=sp.n_tokens, steps=cfg.pez_steps,
                     checkpoint_every=max(1, cfg.pez_steps // 3), test_examples=min(cfg.examples or 200, 200),
                     fluency_weight=[0.0], final_eval="none", max_length=settings.get("max_length") or 80,
                     verbalizer=settings.get("verbalizer") or "auto", seed=cfg.seed, eval_batch_size=cfg.eval_batch_size)
    run = out / "pez-reading" if out else Path(tempfile.mkdtemp(prefix="softscope-pez-"))
    return run_pez(pcfg, 0.0, run, adapter, task, progress=True, init=sp.tensor)["ids"]
