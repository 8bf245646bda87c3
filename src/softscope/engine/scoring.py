"""Scoring engine: lay out [BOS] + prompt + text + label, and read label log-probs at the answer positions only.

The prompt sits directly before the text tokens in every row (right padding), so padding never separates
prompt and text (the PEFT left-padding issue #1093). Placement "after_bos" (softscope's) puts the virtual
tokens after the tokenizer's BOS; "before_bos" puts them first, as PEFT does. Only the positions that predict
label tokens go through the vocabulary head. Used by training, evaluation, PEZ, RLPrompt, bias and interpret.

Verbalizer (one definition for the loss and for accuracy): a class's score is the log-probability of its label
word — "first": of the word's first token only; "full": summed over all the word's tokens. The training loss is
the negative of the gold class's score averaged over rows (for "full", −log p(whole word); continuation tokens
alone earn no credit, and a single-token word gives the usual cross-entropy).

The NLL of a discrete prompt under the LM (scrutability's perplexity, PEZ's fluency term, RLPrompt's reward) is
`token_nll`; `prompt_nll` is the same quantity with a gradient to the prompt's embeddings.

Truncation never drops the input nor the template: when a formatted input is longer than max_length, the text
field is cut at its end (both fields of a pair task, in proportion to their lengths) and the row is marked
`truncated`; a template that alone does not fit is an error.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .errors import SoftscopeError
from .models import ModelAdapter, bf16_linear_weights, final_hidden, last_hidden, lm_logits

PLACEMENTS = ("after_bos", "before_bos")


@dataclass
class Row:
    """One tokenised example: the formatted text (no specials) and its class index."""

    ids: list[int]
    label: int
    truncated: bool = False


class Scorer:
    """Turns (prompt, examples) into label log-probs, losses and accuracy for one model and task."""

    def __init__(self, adapter: ModelAdapter, task, max_length: int = 80, verbalizer: str = "auto",
                 autocast_bf16: bool = False, share_prefix: bool = True, placement: str = "after_bos"):
        self.adapter, self.task, self.max_length = adapter, task, max_length
        self.autocast_bf16 = autocast_bf16
        self.cache_bf16_weights = True  # bf16 copies of frozen weights under autocast (False: re-cast every call)
        self.share_prefix = share_prefix
        self.label_ids = [adapter.encode(" " + w) for w in task.label_words]
        if any(len(x) == 0 for x in self.label_ids):
            raise SoftscopeError("a label word tokenises to nothing: pass non-empty --label-words")
        firsts = [x[0] for x in self.label_ids]
        if verbalizer == "auto":
            verbalizer = "first" if len(set(firsts)) == len(firsts) else "full"
        if verbalizer == "first" and len(set(firsts)) != len(firsts):
            raise SoftscopeError("two label words share their first token: use --verbalizer full")
        if verbalizer not in ("first", "full"):
            raise SoftscopeError(f"unknown verbalizer {verbalizer!r}: use first, full or auto")
        self.verbalizer = verbalizer
        if placement not in PLACEMENTS:
            raise SoftscopeError(f"unknown placement {placement!r}: use {' or '.join(PLACEMENTS)}")
        self.placement = placement
        self.bos = adapter.bos_ids
        self._cache: dict[tuple, Row] = {}
        frame = len(self.bos) + len(adapter.encode(task.template.format(text="", text_b="")))
        if max_length < frame + 1:  # the cut would drop the whole input text (or worse)
            raise SoftscopeError(f"--max-length {max_length} leaves no room for the input: BOS and the template "
                                 f"take {frame} tokens; use at least {frame + 1}")

    def check_fits(self, n_tokens: int, examples, option: str | None = "--tokens") -> None:
        """Refuse a prompt of n_tokens that, with the longest input and label, overruns the model's context.

        Checked before any work starts, so a too-long prompt fails at once instead of minutes into a run; the
        inputs are only tokenised when the cheap bound (max length + prompt + label) does not already fit.
        """
        ctx = self.adapter.context_length
        label = max(len(x) for x in self.label_ids)
        if ctx is None or n_tokens + self.max_length + label <= ctx:
            return
        longest = len(self.bos) + max((len(self.row(e).ids) for e in examples), default=0) + label
        if n_tokens + longest > ctx:
            head = f"{option} {n_tokens}" if option else f"a prompt of {n_tokens} tokens"
            fix = (f"use {option} <= {max(ctx - longest, 0)} or a shorter --max-length" if option else
                   "use a model with a longer context")
            raise SoftscopeError(f"{head} + the longest input ({longest} tokens with BOS and label) exceed the "
                                 f"model's context of {ctx} tokens: {fix}")

    # ---- tokenisation ------------------------------------------------------------------------------
    def row(self, ex) -> Row:
        key = (ex.text, ex.text_b, ex.label)
        r = self._cache.get(key)
        if r is None:
            ids, cut = self._fit(ex)
            r = Row(ids, self.task.label_index(ex.label), cut)
            self._cache[key] = r
        return r

    def _fit(self, ex) -> tuple[list[int], bool]:
        """Token ids of the formatted example within max_length: the text field(s) cut at their end, never the template."""
        ids = self.adapter.encode(self.task.format(ex))
        room = self.max_length - len(self.bos)
        if len(ids) <= room:
            return ids, False
        a = self.adapter.encode(ex.text)
        b = self.adapter.encode(ex.text_b) if ex.text_b else []
        for _ in range(8):  # re-tokenising a cut text can shift by a token or two: shrink until it fits
            excess = len(ids) - room
            total = len(a) + len(b)
            if total == 0:
                break
            keep = max(0, total - excess)
            ka = round(keep * len(a) / total)  # both fields of a pair lose the same share
            a, b = a[:ka], b[: keep - ka]
            cut = type(ex)(self.adapter.decode(a).strip(), ex.label,
                           self.adapter.decode(b).strip() if ex.text_b is not None else None)
            ids = self.adapter.encode(self.task.format(cut))
            if len(ids) <= room:
                return ids, True
        raise SoftscopeError(f"max length {self.max_length} leaves no room for the input after the template "
                             f"{self.task.template!r}: raise --max-length")

    def rows(self, examples) -> list[Row]:
        return [self.row(ex) for ex in examples]

    def truncated(self, examples) -> int:
        """How many of these examples had their text cut to fit max_length."""
        return sum(self.row(ex).truncated for ex in examples)

    # ---- layout --------------------------------------------------------------------------------------
    def layout(self, prompt: torch.Tensor, rows: list[Row], appended: list[list[int]]):
        """Embeddings [B, T, d] of [BOS] + prompt + text + appended tokens (prompt + [BOS] + ... before BOS), right-padded.

        Returns (inputs_embeds, attention_mask, start) where start[b] is the index of the first appended
        token of row b. `prompt` is [n, d] (shared) or [B, n, d] (one per row).
        """
        a = self.adapter
        dev = a.device
        B = len(rows)
        n = prompt.shape[-2]
        nb = len(self.bos)
        lens = [nb + n + len(r.ids) + len(x) for r, x in zip(rows, appended)]
        T = max(lens)
        pad = a.tokenizer.pad_token_id
        ids = torch.full((B, T), pad, dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        before = self.placement == "before_bos"
        for b, (r, x) in enumerate(zip(rows, appended)):
            seq = ([pad] * n + self.bos if before else self.bos + [pad] * n) + r.ids + x
            ids[b, : len(seq)] = torch.tensor(seq)
            mask[b, : len(seq)] = 1
        emb = a.embed(ids.to(dev))
        P = prompt.to(device=dev, dtype=emb.dtype)
        P = P.unsqueeze(0).expand(B, -1, -1) if P.dim() == 2 else P
        at = 0 if before else nb  # where the virtual tokens start
        emb = torch.cat([emb[:, :at], P, emb[:, at + n:]], dim=1)
        start = torch.tensor([nb + n + len(r.ids) for r in rows])
        return emb, mask.to(dev), start

    def shared_positions(self, prompt: torch.Tensor, rows: list[Row]) -> int:
        """How many leading positions every row shares (BOS + one prompt + common text tokens), for prefix reuse."""
        if prompt.dim() != 2 or len(rows) < 2:
            return 0
        first, k = rows[0].ids, min(len(r.ids) for r in rows) - 1  # keep each row's answer position after it
        common = 0
        while common < k and all(r.ids[common] == first[common] for r in rows):
            common += 1
        return len(self.bos) + prompt.shape[0] + common

    def _autocast(self):
        """bf16 autocast when asked (with the frozen weights' bf16 copies kept, not re-cast per call), else nothing."""
        if not self.autocast_bf16:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(torch.autocast(self.adapter.device.type, dtype=torch.bfloat16))
        if self.cache_bf16_weights:
            stack.enter_context(bf16_linear_weights(self.adapter))
        return stack

    def _logits_at(self, prompt, rows, appended, offsets):
        """Vocabulary logits at (row b, position start[b] - 1 + offsets[b][j]) for every j."""
        emb, mask, start = self.layout(prompt, rows, appended)
        with self._autocast():
            h = final_hidden(self.adapter, emb, mask, self.shared_positions(prompt, rows) if self.share_prefix else 0)
            bi = torch.tensor([b for b, offs in enumerate(offsets) for _ in offs], device=h.device)
            pi = torch.tensor([int(start[b]) - 1 + o for b, offs in enumerate(offsets) for o in offs], device=h.device)
            return lm_logits(self.adapter, h[bi, pi]).float()

    # ---- scores -------------------------------------------------------------------------------------
    def label_loss(self, prompt: torch.Tensor, rows: list[Row]) -> torch.Tensor:
        """The prompt-tuning objective: −(gold class score) under the verbalizer, averaged over rows (module doc)."""
        return self.label_loss_per_row(prompt, rows).mean()

    def label_loss_per_row(self, prompt: torch.Tensor, rows: list[Row]) -> torch.Tensor:
        """Per-row loss [B]: cross-entropy (full vocabulary) of the gold word's first token ("first") or the
        sum over all its tokens ("full") — the same quantity `class_logprobs` ranks classes by."""
        labels = [self.label_ids[r.label] if self.verbalizer == "full" else self.label_ids[r.label][:1] for r in rows]
        logits = self._logits_at(prompt, rows, [l[:-1] for l in labels], [list(range(len(l))) for l in labels])
        target = torch.tensor([t for l in labels for t in l], device=logits.device)
        tok = F.cross_entropy(logits, target, reduction="none")
        owner = torch.tensor([b for b, l in enumerate(labels) for _ in l], device=logits.device)
        return torch.zeros(len(rows), device=tok.device, dtype=tok.dtype).index_add(0, owner, tok)

    def class_logprobs(self, prompt: torch.Tensor, rows: list[Row]) -> torch.Tensor:
        """[B, C] log-likelihood of each class's label word (first token, or summed over all its tokens)."""
        C = len(self.label_ids)
        if self.verbalizer == "first":
            logits = self._logits_at(prompt, rows, [[] for _ in rows], [[0] for _ in rows])
            lp = logits.log_softmax(-1)
            return lp[:, [l[0] for l in self.label_ids]]
        # full: one row per (example, class) with the label word's tokens appended
        rr = [r for r in rows for _ in range(C)]
        app = [self.label_ids[c][:-1] for _ in rows for c in range(C)]
        offs = [list(range(len(self.label_ids[c]))) for _ in rows for c in range(C)]
        P = prompt if prompt.dim() == 2 else prompt.repeat_interleave(C, 0)
        lp = self._logits_at(P, rr, app, offs).log_softmax(-1)
        target = torch.tensor([t for _ in rows for c in range(C) for t in self.label_ids[c]], device=lp.device)
        tok = lp.gather(1, target[:, None])[:, 0]
        owner = torch.tensor([i for i in range(len(rr)) for _ in offs[i]], device=lp.device)
        return torch.zeros(len(rr), device=lp.device).index_add(0, owner, tok).view(len(rows), C)

    @torch.no_grad()
    def predict(self, prompt: torch.Tensor, examples, batch_size: int = 32, progress: bool | str = False
                ) -> torch.Tensor:
        """Class log-probs [N, C] for examples, in their order; batches formed by length to cut padding."""
        rows = self.rows(examples)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids))
        out = torch.empty(len(rows), len(self.label_ids))
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        desc = progress if isinstance(progress, str) else "evaluating"
        for idx in tqdm(batches, desc=desc, disable=not progress, leave=False):
            out[idx] = self.class_logprobs(prompt, [rows[i] for i in idx]).cpu()
        return out

    def correct(self, prompt: torch.Tensor, examples, batch_size: int = 32, progress: bool | str = False
                ) -> torch.Tensor:
        """Per-example 0/1 correctness [N] (bool), in the examples' order: what paired tests between prompts need."""
        lp = self.predict(prompt, examples, batch_size, progress)
        return lp.argmax(-1) == torch.tensor([r.label for r in self.rows(examples)], dtype=torch.long)

    def accuracy(self, prompt: torch.Tensor, examples, batch_size: int = 32, progress: bool | str = False) -> float:
        if not len(examples):
            return float("nan")
        return float(self.correct(prompt, examples, batch_size, progress).float().mean())


# ---- NLL of a discrete prompt under the LM ---------------------------------------------------------------
@torch.no_grad()
def token_nll(adapter: ModelAdapter, ids: torch.Tensor) -> torch.Tensor:
    """NLL [K, L] of every token of each row of ids [K, L], given the document start (`adapter.doc_start_id`) and
    the tokens before it: the one definition behind perplexity (metrics), PEZ's fluency term and RLPrompt's reward."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    ids = ids[None] if ids.dim() == 1 else ids
    seq = torch.cat([torch.full((ids.shape[0], 1), adapter.doc_start_id), ids.cpu()], 1).to(adapter.device)
    out = adapter.model.base_model(input_ids=seq, use_cache=False)
    lp = lm_logits(adapter, last_hidden(out)[:, :-1]).float().log_softmax(-1)
    return -lp.gather(2, seq[:, 1:, None])[..., 0]


def prompt_nll(adapter: ModelAdapter, seen: torch.Tensor, ids: list[int] | torch.Tensor) -> torch.Tensor:
    """Mean token NLL of the tokens `ids` whose embeddings are `seen` [n, d], differentiable (PEZ's fluency term).

    In the forward pass this is `token_nll(adapter, ids).mean()`; gradients reach `seen` as LM inputs and, with
    tied embeddings, through each target token's logit.
    """
    ids = torch.as_tensor(ids, device=adapter.device)
    start = adapter.embed(torch.tensor([adapter.doc_start_id], device=adapter.device))
    x = torch.cat([start.to(seen.dtype), seen.to(adapter.device)], 0)[None]
    hid = final_hidden(adapter, x, torch.ones(1, x.shape[1], dtype=torch.long, device=adapter.device))[0, :-1]
    logits = lm_logits(adapter, hid).float()
    head = adapter.model.get_output_embeddings()
    if adapter.tied_embeddings and getattr(head, "bias", None) is None:
        target = (hid.float() * (seen.float() / adapter.embed_scale)).sum(-1)
        cap = getattr(adapter.model.config, "final_logit_softcapping", None)
        if cap:
            target = torch.tanh(target / cap) * cap
    else:  # untied head: the target logit carries no gradient to the prompt, the inputs still do
        target = logits.gather(1, ids[:, None])[:, 0]
    return (logits.logsumexp(-1) - target).mean()
