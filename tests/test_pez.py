"""PEZ: the forward sees exactly the projected tokens; the fluency term is the LM's NLL and is differentiable."""

import pytest
import torch

from conftest import make_adapter, needs_default_model, tiny_task
from softscope.engine.errors import SoftscopeError
from softscope.engine.scoring import prompt_nll, token_nll
from softscope.engine.projection import hard_ids
from softscope.engine.tasks import holdout_task
from softscope.methods.pez import PezConfig, fluency_term, label_init, pez, pez_transform
from softscope.engine.prompts import SoftPrompt
from softscope.engine.runs import read_json, read_jsonl
from softscope.engine.scoring import Scorer
from softscope.engine.training import BatchStream

# NLL of the final hard prompt at w = 0 and w = 0.9 in test_fluency_weight_lowers_the_hard_prompts_nll
PINNED_NLL = (4.0129, 3.7080)


def test_forward_is_the_decoded_hard_prompt_fed_as_text(tiny):
    task = tiny_task()
    scorer = Scorer(tiny, task)
    # seeded: some draws project onto punctuation that the tiny tokenizer glues to the word before when decoding
    P = torch.nn.Parameter(torch.randn(5, tiny.width, generator=torch.Generator().manual_seed(0)))
    seen = pez_transform(tiny)(P)
    ids = hard_ids(tiny, P)
    text = tiny.decode(ids)
    as_text = tiny.embed(torch.tensor(tiny.encode(text)))  # the hard prompt, decoded and re-read as text
    assert tiny.encode(text) == ids
    assert torch.allclose(seen, as_text, atol=1e-6)
    rows = scorer.rows(task.train[:8])
    loss = scorer.label_loss(seen, rows)
    assert loss.item() == pytest.approx(scorer.label_loss(as_text, rows).item(), abs=1e-5)
    loss.backward()  # straight through: the gradient at the projection lands on P unchanged
    assert P.grad is not None and P.grad.abs().sum() > 0
    leaf = as_text.clone().requires_grad_(True)
    scorer.label_loss(leaf, rows).backward()
    assert torch.allclose(P.grad, leaf.grad, atol=1e-6)


def test_training_loss_is_the_hard_prompt_loss(tiny, tmp_path):
    """The loss logged at step 1 of a PEZ run equals the label loss of the initial hard prompt read as text."""
    task = tiny_task()
    cfg = PezConfig(tokens=4, steps=2, batch_size=4, checkpoint_every=1, eval_examples=0, holdout=6,
                    test_examples=4, lr=0.3, fluency_weight=[0.0])
    pez(cfg, tmp_path, adapter=tiny, task=task, progress=False)
    run = tmp_path / "w-0"
    logged = [m for m in read_jsonl(run / "metrics.jsonl") if m["event"] == "train"][0]["loss"]
    held, _ = holdout_task(task, cfg.holdout, cfg.seed)
    scorer = Scorer(tiny, task)
    idx = BatchStream(scorer, held.train, cfg.batch_size, cfg.seed, cfg.bucket)(0)
    ids0 = hard_ids(tiny, label_init(tiny, task, cfg.tokens))
    P_text = tiny.embed(torch.tensor(tiny.encode(tiny.decode(ids0))))
    direct = scorer.label_loss(P_text, scorer.rows([held.train[i] for i in idx])).item()
    assert logged == pytest.approx(direct, abs=1e-5)
    # every checkpoint holds a hard prompt: its rows are vocabulary embeddings
    E = tiny.embed(torch.arange(tiny.vocab_size))
    for ck in sorted((run / "checkpoints").glob("*.safetensors")):
        t = SoftPrompt.load(ck).tensor
        assert torch.allclose(t, E[hard_ids(tiny, t)], atol=1e-6)
    s = read_json(run / "pez_summary.json")
    assert s["selected_step"] in (0, 1, 2) and len(s["ids"]) == 4 and s["test_examples"] == 4
    assert (tmp_path / "pez_curves.png").exists() and (run / "prompt_continuous.safetensors").exists()


def test_fluency_nll_equals_token_nll_and_has_gradient(tiny_any):
    P = torch.nn.Parameter(torch.randn(4, tiny_any.width) * 0.5)
    seen = pez_transform(tiny_any)(P)
    ids = hard_ids(tiny_any, P)
    nll = prompt_nll(tiny_any, seen, ids)
    direct = sum(token_nll(tiny_any, ids)[0].tolist()) / len(ids)
    assert nll.item() == pytest.approx(direct, abs=1e-4)
    nll.backward()
    assert P.grad.abs().sum() > 0


def test_fluency_term_weight_scaling(tiny):
    P = torch.randn(3, tiny.width)
    base = prompt_nll(tiny, tiny.embed(torch.tensor(hard_ids(tiny, P))), hard_ids(tiny, P)).item()
    assert fluency_term(tiny, 0.5).fn(P).item() == pytest.approx(base, rel=1e-5)  # w/(1-w) = 1
    assert fluency_term(tiny, 0.2).fn(P).item() == pytest.approx(0.25 * base, rel=1e-5)


def test_config_validation():
    with pytest.raises(SoftscopeError):
        PezConfig(fluency_weight=[1.0])
    with pytest.raises(SoftscopeError):
        PezConfig(init="nope")
    assert PezConfig(fluency_weight=["0", "0.3"]).fluency_weight == [0.0, 0.3]


def test_cli_pez_runs(tmp_path, monkeypatch):
    """The CLI command builds the config and prints the table (tiny model and task patched in)."""
    from click.testing import CliRunner

    import softscope.methods.pez as pez_mod
    from softscope.cli.pez import pez_cmd

    adapter, task = make_adapter("llama"), tiny_task()
    monkeypatch.setattr(pez_mod, "load_model_for", lambda cfg: adapter)
    monkeypatch.setattr(pez_mod, "load_task_for", lambda cfg: task)
    res = CliRunner().invoke(pez_cmd, ["--tokens", "3", "--steps", "1", "--batch-size", "4", "--holdout", "6",
                                       "--eval-examples", "0", "--fluency-weight", "0,0.5", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    import re

    table = [l for l in res.output.splitlines() if re.match(r"^\s+0(\.5)?\s+\d\.\d{3}\s", l)]
    assert "test acc" in res.output and len(table) == 2


@needs_default_model
def test_default_model_projection_roundtrip():
    from softscope.engine.models import load_model

    a = load_model("smollm2-135m")
    from softscope.engine.tasks import load_task

    P = label_init(a, load_task("sst2"), 6)
    ids = hard_ids(a, P)
    assert a.decode(ids).strip().split()[0] in ("negative", "positive")
    nll = prompt_nll(a, pez_transform(a)(P), ids)
    assert nll.item() == pytest.approx(sum(token_nll(a, ids)[0].tolist()) / 6, abs=1e-3)


def test_sweep_reuses_finished_runs_and_refuses_other_settings(tiny, tmp_path):
    task = tiny_task()
    cfg = PezConfig(tokens=3, steps=1, batch_size=4, eval_examples=0, holdout=6, test_examples=-1, fluency_weight=[0])
    first = pez(cfg, tmp_path, adapter=tiny, task=task, progress=False)
    assert first["runs"][0]["test_accuracy"] is None  # -1: the caller scores the prompt itself
    assert pez(cfg, tmp_path, adapter=tiny, task=task, progress=False) == first
    with pytest.raises(SoftscopeError):
        pez(PezConfig(tokens=3, steps=2, batch_size=4, eval_examples=0, holdout=6, test_examples=-1),
            tmp_path, adapter=tiny, task=task, progress=False)


def test_hard_prompt_never_uses_special_tokens(tiny):
    """A virtual token sitting exactly on a special token's embedding projects to the nearest ordinary token."""
    from softscope.engine.models import token_embeddings
    from softscope.engine.models import special_ids

    special = special_ids(tiny)
    assert special, "the tiny tokenizer should define special tokens"
    E = token_embeddings(tiny).detach().float()
    P = torch.cat([E[special[:1]], torch.randn(3, tiny.width)])
    ids = hard_ids(tiny, P)
    assert not set(ids) & set(special)
    sims = torch.nn.functional.normalize(E, dim=-1) @ torch.nn.functional.normalize(P[0], dim=-1)
    sims[special] = float("-inf")
    assert ids[0] == int(sims.argmax())  # the nearest of the rest, not just any ordinary token
    assert torch.allclose(pez_transform(tiny)(P), E[ids], atol=1e-6)  # the model sees the same tokens


def test_fluency_weight_lowers_the_hard_prompts_nll(tmp_path):
    """PEZ with w > 0 ends on a hard prompt the LM finds likelier than w = 0 does, from the same init and data.

    A tiny random Llama built here (torch seed 0), 4 tokens from a random init, 30 steps at lr 0.3: the NLL of the
    hard prompt each run ends on (mean over its tokens, after the document start) is pinned; w = 0.9's is lower."""
    adapter, task = make_adapter("llama"), tiny_task()
    nll = {}
    for w in (0.0, 0.9):
        cfg = PezConfig(tokens=4, steps=30, batch_size=4, checkpoint_every=30, eval_examples=0, holdout=6,
                        test_examples=-1, lr=0.3, init="random", seed=0, fluency_weight=[w])
        pez(cfg, tmp_path / f"w{w}", adapter=adapter, task=task, progress=False)
        final = SoftPrompt.load(tmp_path / f"w{w}" / f"w-{w:g}" / "prompt.safetensors").tensor  # the last step's
        nll[w] = float(token_nll(adapter, hard_ids(adapter, final)).mean())
    assert nll[0.9] < nll[0.0]
    assert (nll[0.0], nll[0.9]) == pytest.approx(PINNED_NLL, abs=1e-3)
