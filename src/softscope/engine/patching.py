"""Patchscopes engine: read hidden states from a source pass, write them into a target prompt, generate.

Patchscopes (Ghandeharioun et al. 2024): a source representation h (the output of decoder block ℓ at some
positions of a source input) is written over the output of block ℓ* at the placeholder positions of a target
prompt T, and the model continues T greedily. For soft prompts the source input is the prompt itself
(`inputs_embeds`, after BOS when the tokenizer adds one) and all n virtual-token states are patched together.
`source_pass="after-block-0"` is the InSPEcT authors' variant instead: the tokens " x" × n go in and the output of
block 0 at their positions is overwritten with the prompt, so block 0 never processes it (docs/describe.md).

Why this engine is fast (docs/methods.md §3):
- the patch is needed during the prefill pass only: later tokens see the patched states through the KV cache,
  so cached greedy decoding gives the same text as re-running the whole sequence with the patch at every step
  (`reference_generate_ids`, the slow no-cache procedure, kept here as the test oracle);
- the target tokens before the first placeholder are identical in every row and untouched by any patch
  (causal attention), so they are run once and their KV cache is shared by all rows of a batch;
- a layer-pair sweep is embarrassingly parallel: every row of one batch carries its own source states and its
  own target layer, and one forward hook per involved block patches just the rows that target it. All rows
  share the same target prompt, so no padding is needed and positions stay identical.

Hooks sit on `adapter.blocks[l]`, whose output is `hidden_states[l + 1]`; a block may return a tensor
(transformers >= 5 for some families) or a tuple whose first element is the hidden state — both are handled.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .errors import SoftscopeError
from .models import ModelAdapter, cache_kwarg, last_hidden, lm_logits, returned_cache
from .target_prompts import placeholder_id


# ---- hooks ---------------------------------------------------------------------------------------------------
def _hidden(out):
    """The hidden-state tensor of a block's output (tensor or tuple)."""
    return out[0] if isinstance(out, tuple) else out


def _replace_hidden(out, h):
    return (h,) + tuple(out[1:]) if isinstance(out, tuple) else h


@dataclass
class _Patch:
    """Rows `rows` of the batch get `states` [r, n, d] at `positions` in the output of one block."""

    rows: torch.Tensor
    positions: torch.Tensor
    states: torch.Tensor
    active: bool = True

    def __call__(self, module, args, out):
        if not self.active:
            return None
        h = _hidden(out).clone()
        h[self.rows[:, None], self.positions[None, :]] = self.states.to(h.dtype)
        return _replace_hidden(out, h)


@contextlib.contextmanager
def _patched(adapter: ModelAdapter, layers: Sequence[int], positions: Sequence[int], sources: torch.Tensor):
    """Install one hook per distinct target layer; yields the _Patch objects (set .active=False after prefill)."""
    dev = adapter.device
    pos = torch.as_tensor(list(positions), dtype=torch.long, device=dev)
    layer_t = torch.as_tensor(list(layers), dtype=torch.long)
    patches, handles = [], []
    try:
        for l in sorted(set(int(x) for x in layers)):
            rows = (layer_t == l).nonzero()[:, 0]
            p = _Patch(rows.to(dev), pos, sources[rows].to(dev))
            handles.append(adapter.blocks[l].register_forward_hook(p))
            patches.append(p)
        yield patches
    finally:
        for hd in handles:
            hd.remove()


def _check(adapter: ModelAdapter, target_ids: Sequence[int], positions: Sequence[int], sources: torch.Tensor,
           layers: Sequence[int]) -> None:
    if sources.dim() != 3:
        raise SoftscopeError(f"sources must be [rows, n, d], got shape {tuple(sources.shape)}")
    if sources.shape[0] != len(layers):
        raise SoftscopeError(f"{sources.shape[0]} source rows but {len(layers)} target layers: give one layer per row")
    if sources.shape[1] != len(positions):
        raise SoftscopeError(f"{sources.shape[1]} source vectors per row but {len(positions)} placeholder positions")
    if sources.shape[2] != adapter.width:
        raise SoftscopeError(f"source width {sources.shape[2]} != model width {adapter.width}")
    bad = [p for p in positions if not 0 <= p < len(target_ids)]
    if bad:
        raise SoftscopeError(f"placeholder positions {bad} lie outside the {len(target_ids)}-token target prompt")
    badl = [l for l in layers if not 0 <= int(l) < adapter.n_layers]
    if badl:
        raise SoftscopeError(f"target layers {sorted(set(badl))} out of range: {adapter.name} has layers 0..{adapter.n_layers - 1}")


# ---- source side ---------------------------------------------------------------------------------------------
SOURCE_PASSES = ("embeddings", "after-block-0")


@torch.no_grad()
def capture(adapter: ModelAdapter, inputs_embeds: torch.Tensor | None, layers: Sequence[int],
            input_ids: torch.Tensor | None = None, overwrite: tuple | None = None) -> torch.Tensor:
    """Outputs of blocks `layers` for a batch of input embeddings [B, T, d] (or token ids [B, T]) → [L, B, T, d]
    (float32, on the model device). `overwrite=(positions, states [B, n, d])` writes states over block 0's output
    at those positions first (the InSPEcT authors' source pass)."""
    got: dict[int, torch.Tensor] = {}
    ctx = contextlib.nullcontext()
    if overwrite is not None:  # installed first, so the capture hook of block 0 sees the overwritten output
        pos, states = overwrite
        ctx = _patched(adapter, [0] * states.shape[0], pos, states)
    with ctx:
        handles = [adapter.blocks[l].register_forward_hook(
            lambda m, a, out, l=l: got.__setitem__(l, _hidden(out).detach().float())) for l in sorted(set(layers))]
        try:
            if input_ids is not None:
                ids = input_ids.to(adapter.device)
                mask = torch.ones(ids.shape, dtype=torch.long, device=adapter.device)
                adapter.model.base_model(input_ids=ids, attention_mask=mask, use_cache=False)
            else:
                emb = inputs_embeds.to(device=adapter.device, dtype=adapter.dtype)
                mask = torch.ones(emb.shape[:2], dtype=torch.long, device=adapter.device)
                adapter.model.base_model(inputs_embeds=emb, attention_mask=mask, use_cache=False)
        finally:
            for hd in handles:
                hd.remove()
    return torch.stack([got[l] for l in layers])


def source_states(adapter: ModelAdapter, prompt: torch.Tensor, layers: Sequence[int] | None = None,
                  source_pass: str = "embeddings", placement: str = "after_bos") -> torch.Tensor:
    """Block outputs at the virtual-token positions of a soft prompt run alone (after BOS if the model adds one;
    placement "before_bos": the prompt first, then BOS, as PEFT trained it).

    prompt [n, d] → [L, n, d]; prompt [K, n, d] (several prompts, e.g. checkpoints) → [L, K, n, d].
    `layers` defaults to every layer. `source_pass`: "embeddings" feeds the prompt as input embeddings (as it is
    trained); "after-block-0" feeds the tokens " x" × n and overwrites block 0's output at those positions with
    the prompt (the InSPEcT authors' code), so layer 0 returns the prompt itself.
    """
    if source_pass not in SOURCE_PASSES:
        raise SoftscopeError(f"--source-pass {source_pass!r}: use {' or '.join(SOURCE_PASSES)}")
    layers = list(range(adapter.n_layers)) if layers is None else list(layers)
    single = prompt.dim() == 2
    P = prompt[None] if single else prompt
    if P.shape[-1] != adapter.width:
        raise SoftscopeError(f"prompt width {P.shape[-1]} != model width {adapter.width}")
    nb = len(adapter.bos_ids)
    K, n = P.shape[0], P.shape[1]
    if source_pass == "after-block-0":
        ids = torch.tensor([list(adapter.bos_ids) + [placeholder_id(adapter)] * n] * K)
        states = capture(adapter, None, layers, input_ids=ids, overwrite=(range(nb, nb + n), P))[:, :, nb:]
        return states[:, 0] if single else states
    parts = [P.to(device=adapter.device, dtype=adapter.dtype)]
    before = placement == "before_bos"  # PEFT's placement: virtual tokens first, then BOS
    if nb:
        bos = adapter.embed(torch.tensor([adapter.bos_ids], device=adapter.device))
        parts.insert(len(parts) if before else 0, bos.expand(K, -1, -1))
    states = capture(adapter, torch.cat(parts, dim=1), layers)
    states = states[:, :, :n] if before else states[:, :, nb:]
    return states[:, 0] if single else states


# ---- target side: batched, KV-cached, patched greedy generation -------------------------------------------------
STOPS = ("eos", "none", "paper")


def stop_rule(adapter: ModelAdapter, stop: str) -> tuple[int | None, bool]:
    """(token that ends generation, whether it stays in the output) for a --stop value.

    eos: the tokenizer's EOS, dropped; none: never stop before max_new_tokens; paper: the InSPEcT authors' rule,
    the first id of the tokenizer's encoding of "$" with special tokens, kept (BOS for tokenizers that add one, so
    in effect never; the "$" token itself for SmolLM2, GPT-2 and other tokenizers without BOS).
    """
    if stop == "eos":
        return adapter.eos_id, False
    if stop == "none":
        return None, False
    if stop == "paper":
        return int(adapter.tokenizer("$", add_special_tokens=True).input_ids[0]), True
    raise SoftscopeError(f"--stop {stop!r}: use {', '.join(STOPS)}")


def _step(adapter: ModelAdapter, ids: torch.Tensor, past, kw: str):
    """One forward over `ids` (with the cache so far) → (last-position logits [B, V], cache)."""
    out = adapter.model.base_model(input_ids=ids, use_cache=True, **{kw: past})
    return lm_logits(adapter, last_hidden(out)[:, -1]).float(), returned_cache(out, kw)


@torch.no_grad()
def patch_generate_ids(adapter: ModelAdapter, target_ids: Sequence[int], placeholder_positions: Sequence[int],
                       sources: torch.Tensor, target_layers: Sequence[int], max_new_tokens: int = 60,
                       stop: str = "eos", batch_size: int = 64,
                       on_step: Callable[[list[int], list[int]], Sequence[bool] | None] | None = None,
                       drop_finished: bool = True) -> list[list[int]]:
    """Greedy continuation token ids of the target prompt for every row, ended by `stop` (`stop_rule`).

    Row r has `sources[r]` ([n, d]) written over the output of block `target_layers[r]` at the n placeholder
    positions during the prefill pass; decoding then reuses the KV cache. Rows are processed `batch_size` at a
    time; the result does not depend on the batch size (up to float rounding of batched matmuls).

    `on_step(rows, tokens)`, called after every decoding step with the (global) indices of the rows still being
    decoded and their new tokens, lets a caller stream the text as it is made (the live explorer); it may return
    one bool per row, False dropping that row from the batch from then on (its output ends there).
    `drop_finished`: a row that has produced its stop token leaves the batch (and its KV cache) at once instead of
    being decoded to the end with the others; its text is the same (tested against `drop_finished=False`).
    """
    _check(adapter, target_ids, placeholder_positions, sources, target_layers)
    eos, keep = stop_rule(adapter, stop)
    kw = cache_kwarg(adapter.model.base_model)
    results: list[list[int]] = []
    for b0 in range(0, sources.shape[0], batch_size):
        src, lay = sources[b0:b0 + batch_size], list(target_layers[b0:b0 + batch_size])
        B = src.shape[0]
        ids = torch.tensor([list(target_ids)] * B, device=adapter.device)
        # the tokens before the first placeholder are the same in every row and no patch can reach them
        # (causal attention): run them once and share their cache; only the rest is prefilled per row
        first = min(placeholder_positions)
        past = None
        if first > 0:
            _, past = _step(adapter, ids[:1, :first], None, kw)
            if hasattr(past, "batch_repeat_interleave"):
                past.batch_repeat_interleave(B)
            else:  # an old-style cache: prefill everything per row
                first, past = 0, None
        shifted = [p - first for p in placeholder_positions]
        with _patched(adapter, lay, shifted, src) as patches:
            logits, past = _step(adapter, ids[:, first:], past, kw)
            for p in patches:  # prefill done: the cache now carries the patched states
                p.active = False
            out = torch.full((B, max_new_tokens), -1, dtype=torch.long, device=adapter.device)
            done = torch.zeros(B, dtype=torch.bool, device=adapter.device)
            alive = torch.arange(B, device=adapter.device)  # batch rows still decoded (all, unless on_step drops some)
            for t in range(max_new_tokens):
                nxt = logits.argmax(-1)
                out[alive, t] = nxt
                if eos is not None:
                    done[alive] |= nxt == eos
                finished = eos is not None and bool(done[alive].all())
                going = None  # rows of `alive` that go on being decoded (None: all of them)
                if drop_finished and eos is not None and bool(done[alive].any()):
                    going = ~done[alive]
                if on_step is not None:
                    wanted = on_step([b0 + int(r) for r in alive], nxt.tolist())
                    if wanted is not None and not all(wanted):
                        sel = torch.as_tensor(list(wanted), dtype=torch.bool, device=adapter.device)
                        going = sel if going is None else going & sel
                if finished:
                    break
                if going is not None and not bool(going.all()) and hasattr(past, "batch_select_indices"):
                    if not bool(going.any()):
                        break
                    idx = going.nonzero()[:, 0]
                    alive, nxt = alive[idx], nxt[idx]
                    past.batch_select_indices(idx)
                if t + 1 < max_new_tokens:
                    logits, past = _step(adapter, nxt[:, None], past, kw)
        del past
        for row in out.tolist():
            row = row[: row.index(-1)] if -1 in row else row
            results.append(row[: row.index(eos) + keep] if eos is not None and eos in row else row)
    return results


def patch_generate(adapter: ModelAdapter, target_ids: Sequence[int], placeholder_positions: Sequence[int],
                   sources: torch.Tensor, target_layers: Sequence[int], max_new_tokens: int = 60,
                   stop: str = "eos", batch_size: int = 64) -> list[str]:
    """`patch_generate_ids`, decoded to text (one string per row; special tokens dropped)."""
    ids = patch_generate_ids(adapter, target_ids, placeholder_positions, sources, target_layers, max_new_tokens,
                             stop, batch_size)
    return [adapter.tokenizer.decode(r, skip_special_tokens=True) for r in ids]


@torch.no_grad()
def reference_generate_ids(adapter: ModelAdapter, target_ids: Sequence[int], placeholder_positions: Sequence[int],
                           source: torch.Tensor | None, target_layer: int | None, max_new_tokens: int = 60,
                           stop: str = "eos") -> list[int]:
    """The slow oracle: one row, no cache, the whole sequence re-run with the patch applied at every new token.

    `source=None` generates without any patch. The InSPEcT authors' target side decodes this way too (their
    source pass differs: `source_states`); tests and the benchmark compare the engine against it.
    """
    seq = list(target_ids)
    eos, keep = stop_rule(adapter, stop)
    if source is not None:
        _check(adapter, target_ids, placeholder_positions, source[None], [target_layer])
    ctx = (_patched(adapter, [target_layer], placeholder_positions, source[None]) if source is not None
           else contextlib.nullcontext())
    new: list[int] = []
    with ctx:
        for _ in range(max_new_tokens):
            ids = torch.tensor([seq], device=adapter.device)
            out = adapter.model.base_model(input_ids=ids, use_cache=False)
            nxt = int(lm_logits(adapter, last_hidden(out)[:, -1]).float().argmax(-1))
            if eos is not None and nxt == eos:
                new += [nxt] if keep else []
                break
            new.append(nxt)
            seq.append(nxt)
    return new


# ---- layer grids ------------------------------------------------------------------------------------------
def layer_pairs(spec: str, n_layers: int) -> list[tuple[int, int]]:
    """(source layer, target layer) pairs from a spec.

    - ``all``: source 2..L-2 × target 2..L-2 (the InSPEcT grid; 27 × 27 = 729 pairs at 30 layers)
    - ``every:K``: the same range, every K-th layer on both axes
    - ``band:A-B``: source and target both in A..B
    - ``S:T,S:T,...``: explicit pairs
    """
    spec = spec.strip().lower()
    lo, hi = (2, n_layers - 2) if n_layers > 5 else (0, n_layers - 1)

    def square(layers):
        return [(s, t) for s in layers for t in layers]

    try:
        if spec == "all":
            return square(range(lo, hi + 1))
        if spec.startswith("every:"):
            k = int(spec.split(":", 1)[1])
            if k < 1:
                raise ValueError
            return square(range(lo, hi + 1, k))
        if spec.startswith("band:"):
            a, b = (int(x) for x in spec.split(":", 1)[1].split("-"))
            if a > b:
                raise SoftscopeError(f"--layers {spec!r}: the band runs from {a} down to {b}: write band:{b}-{a}")
            pairs = square(range(a, b + 1))
        else:
            pairs = [tuple(int(x) for x in p.split(":")) for p in spec.split(",") if p.strip()]
            if not pairs or any(len(p) != 2 for p in pairs):
                raise ValueError
    except ValueError:
        raise SoftscopeError(f"--layers {spec!r}: use all, every:K, band:A-B or explicit pairs like 4:4,8:4") from None
    bad = sorted({l for p in pairs for l in p if not 0 <= l < n_layers})
    if bad or not pairs:
        raise SoftscopeError(f"--layers {spec!r}: layers {bad} out of range 0..{n_layers - 1}")
    return pairs
