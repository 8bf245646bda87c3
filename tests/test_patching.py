"""The Patchscopes engine: batched == one pair at a time, KV-cached == full re-forward, self-patch == no patch."""

from __future__ import annotations

import pytest
import torch

from conftest import ARCHS, make_adapter, needs_default_model
from softscope.engine.errors import SoftscopeError
from softscope.engine.patching import (capture, layer_pairs, patch_generate, patch_generate_ids, reference_generate_ids,
                                source_states)

@pytest.fixture(params=ARCHS)
def lively(request):
    """A tiny model of each family with larger random weights, so different patches give different greedy text
    (at the default init scale every continuation collapses to one token and the tests would prove nothing)."""
    a = make_adapter(request.param)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in a.model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * (0.35 if "emb" in name or "wte" in name else 0.25))
    return a


TARGET = "what is the movie ? x | news sports world business tech x | the story was x x x"


def _target(adapter):
    ids = adapter.bos_ids + adapter.encode(TARGET)
    x = adapter.encode("x")[0]
    return ids, [i for i, t in enumerate(ids) if t == x][-3:]


def _grid(adapter, n=3, seed=0):
    """Source states of a random 3-token prompt, for a few (source, target) pairs."""
    g = torch.Generator().manual_seed(seed)
    P = torch.randn(n, adapter.width, generator=g) * 2.0
    S = source_states(adapter, P)  # [L, n, d]
    L = adapter.n_layers
    pairs = [(s, t) for s in range(L) for t in range(L)]
    return torch.stack([S[s] for s, _ in pairs]), [t for _, t in pairs]


def test_batched_equals_one_at_a_time(lively):
    ids, pos = _target(lively)
    src, layers = _grid(lively)
    batched = patch_generate_ids(lively, ids, pos, src, layers, max_new_tokens=8, stop="none", batch_size=16)
    single = [patch_generate_ids(lively, ids, pos, src[r:r + 1], layers[r:r + 1], max_new_tokens=8,
                                 stop="none")[0] for r in range(len(layers))]
    assert len(batched) == len(layers) and all(len(b) == 8 for b in batched)
    assert batched == single
    # the patch matters: different source states give different continuations somewhere in the grid
    assert len({tuple(b) for b in batched}) > 1


def test_kv_cached_equals_full_reforward(lively):
    ids, pos = _target(lively)
    src, layers = _grid(lively, seed=1)
    rows = list(range(0, len(layers), 3))
    fast = patch_generate_ids(lively, ids, pos, src[rows], [layers[r] for r in rows], max_new_tokens=8,
                              stop="none")
    slow = [reference_generate_ids(lively, ids, pos, src[r], layers[r], max_new_tokens=8, stop="none")
            for r in rows]
    assert fast == slow


def test_self_patch_reproduces_unpatched(lively):
    ids, pos = _target(lively)
    L = lively.n_layers
    own = capture(lively, lively.embed(torch.tensor([ids])), list(range(L)))[:, 0][:, pos]  # [L, n, d]
    patched = patch_generate_ids(lively, ids, pos, own, list(range(L)), max_new_tokens=8, stop="none")
    plain = reference_generate_ids(lively, ids, pos, None, None, max_new_tokens=8, stop="none")
    assert all(p == plain for p in patched)
    # and the model's own cached greedy decoding agrees with it
    hf = lively.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=1)
    assert hf[0, len(ids):].tolist() == plain


def test_block_output_tensor_or_tuple(tiny):
    """Source states are the block outputs, i.e. hidden_states[l + 1] of output_hidden_states (not the last one,
    which some families return after the final norm)."""
    P = torch.randn(2, tiny.width)
    S = source_states(tiny, P)
    bos = tiny.embed(torch.tensor([tiny.bos_ids], dtype=torch.long))
    emb = torch.cat([bos, P[None]], dim=1)
    hs = tiny.model.base_model(inputs_embeds=emb, output_hidden_states=True).hidden_states
    nb = len(tiny.bos_ids)
    for l in range(tiny.n_layers - 1):
        torch.testing.assert_close(S[l], hs[l + 1][0, nb:].float())
    assert source_states(tiny, torch.stack([P, P])).shape == (tiny.n_layers, 2, 2, tiny.width)


def test_stop_at_eos_and_text(tiny):
    ids, pos = _target(tiny)
    src, layers = _grid(tiny)
    texts = patch_generate(tiny, ids, pos, src[:4], layers[:4], max_new_tokens=5)
    assert len(texts) == 4 and all(isinstance(t, str) for t in texts)
    eos_rows = patch_generate_ids(tiny, ids, pos, src[:4], layers[:4], max_new_tokens=5)
    assert all(tiny.eos_id not in r and len(r) <= 5 for r in eos_rows)


def test_checks_and_layer_specs(tiny):
    ids, pos = _target(tiny)
    with pytest.raises(SoftscopeError, match="one layer per row"):
        patch_generate_ids(tiny, ids, pos, torch.zeros(2, 3, tiny.width), [0])
    with pytest.raises(SoftscopeError, match="placeholder"):
        patch_generate_ids(tiny, ids, pos[:2], torch.zeros(1, 3, tiny.width), [0])
    with pytest.raises(SoftscopeError, match="out of range"):
        patch_generate_ids(tiny, ids, pos, torch.zeros(1, 3, tiny.width), [99])
    assert len(layer_pairs("all", 30)) == 27 * 27
    assert layer_pairs("every:3", 30)[:2] == [(2, 2), (2, 5)] and len(layer_pairs("every:3", 30)) == 81
    assert layer_pairs("band:3-4", 30) == [(3, 3), (3, 4), (4, 3), (4, 4)]
    assert layer_pairs("4:4, 8:4", 30) == [(4, 4), (8, 4)]
    for bad in ("every:0", "4-4", "band:x", "31:2"):
        with pytest.raises(SoftscopeError):
            layer_pairs(bad, 30)


@needs_default_model
def test_default_model_batched_equals_reference():
    from softscope.engine.models import load_model

    a = load_model("smollm2-135m", device="cpu")
    ids = a.encode("Identify the language of this text: English, French | Decide if the statement is true: true, false |")
    x = a.encode(" x")[0]
    pos = list(range(len(ids), len(ids) + 3))
    ids = ids + [x] * 3
    P = a.embed(torch.tensor(a.encode(" Is this review positive or negative"))[:3]).float()
    S = source_states(a, P)
    pairs = [(4, 4), (8, 4), (12, 20)]
    src, lay = torch.stack([S[s] for s, _ in pairs]), [t for _, t in pairs]
    fast = patch_generate_ids(a, ids, pos, src, lay, max_new_tokens=6)
    slow = [reference_generate_ids(a, ids, pos, src[r], lay[r], max_new_tokens=6) for r in range(len(pairs))]
    assert fast == slow


def test_source_pass_after_block_0_matches_hand_written_reference(tiny_any):
    """The InSPEcT authors' source pass: tokens ' x' x n go in, block 0's output at those positions is overwritten
    with the prompt, and layer s is read from block s's output; written here with a plain hook and
    output_hidden_states, the way their code reads it."""
    from softscope.engine.target_prompts import placeholder_id

    a = tiny_any
    g = torch.Generator().manual_seed(3)
    P = torch.randn(3, a.width, generator=g)
    nb, n = len(a.bos_ids), 3
    ids = torch.tensor([a.bos_ids + [placeholder_id(a)] * n])

    def overwrite(module, args, out):
        h = (out[0] if isinstance(out, tuple) else out).clone()
        h[0, nb:nb + n] = P
        return (h,) + tuple(out[1:]) if isinstance(out, tuple) else h

    hd = a.blocks[0].register_forward_hook(overwrite)
    try:
        hs = a.model.base_model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
    finally:
        hd.remove()
    S = source_states(a, P, source_pass="after-block-0")
    torch.testing.assert_close(S[0], P)  # block 0 never processes the prompt
    for s in range(a.n_layers - 1):  # the last entry of hidden_states may come after the final norm
        torch.testing.assert_close(S[s], hs[s + 1][0, nb:].float())
    assert not torch.allclose(S[1], source_states(a, P, [1])[0])  # a different pass than the embeddings one
    both = source_states(a, torch.stack([P, 2 * P]), [0, 2], source_pass="after-block-0")
    torch.testing.assert_close(both[:, 0], S[[0, 2]])
    torch.testing.assert_close(both[0, 1], 2 * P)
    with pytest.raises(SoftscopeError, match="source-pass"):
        source_states(a, P, source_pass="block-0")


def test_stop_rules(tiny, monkeypatch):
    import softscope.engine.patching as patching

    ids, pos = _target(tiny)
    src, layers = _grid(tiny)
    free = patch_generate_ids(tiny, ids, pos, src[:3], layers[:3], max_new_tokens=6, stop="none")
    assert all(len(r) == 6 for r in free)
    t = free[0][2]  # a token row 0 does emit: make it the stop token
    first = free[0].index(t)
    monkeypatch.setattr(patching, "stop_rule", lambda a, stop: (t, stop == "paper"))
    kept = patch_generate_ids(tiny, ids, pos, src[:3], layers[:3], max_new_tokens=6, stop="paper")
    dropped = patch_generate_ids(tiny, ids, pos, src[:3], layers[:3], max_new_tokens=6, stop="eos")
    assert kept[0] == free[0][:first + 1] and dropped[0] == free[0][:first]
    assert kept[0] == reference_generate_ids(tiny, ids, pos, src[0], layers[0], max_new_tokens=6, stop="paper")
    monkeypatch.undo()
    assert patching.stop_rule(tiny, "none") == (None, False)
    assert patching.stop_rule(tiny, "eos") == (tiny.eos_id, False)
    with pytest.raises(SoftscopeError, match="--stop"):
        patching.stop_rule(tiny, "dollar")


def test_dropping_finished_rows_gives_the_same_text(lively, monkeypatch):
    """Rows that reached their stop token leave the batch (and KV cache) at once; the text equals decoding every
    row to the end (the plain path) and the no-cache oracle, while rows really end at different steps."""
    ids, pos = _target(lively)
    src, layers = _grid(lively, seed=2)
    rows = list(range(0, len(layers), 2))
    src, layers = src[rows], [layers[r] for r in rows]
    free = patch_generate_ids(lively, ids, pos, src, layers, max_new_tokens=8, stop="none")
    # make the stop token the one whose first occurrence falls at the most different steps across rows
    spread = {t: len({r.index(t) if t in r else -1 for r in free}) for r0 in free for t in r0}
    stop_tok = max(sorted(spread), key=spread.get)
    monkeypatch.setattr(type(lively), "eos_id", property(lambda self: stop_tok), raising=False)
    dropped = patch_generate_ids(lively, ids, pos, src, layers, max_new_tokens=8, stop="eos", drop_finished=True)
    plain = patch_generate_ids(lively, ids, pos, src, layers, max_new_tokens=8, stop="eos", drop_finished=False)
    assert dropped == plain
    assert dropped == [r[: r.index(stop_tok)] if stop_tok in r else r for r in free]
    lengths = {len(r) for r in dropped}
    assert len(lengths) >= 2 and min(lengths) < 8  # rows ended at different steps: the dropping path ran
    oracle = [reference_generate_ids(lively, ids, pos, src[i], layers[i], max_new_tokens=8, stop="eos")
              for i in range(0, len(layers), 5)]
    assert oracle == dropped[::5]
