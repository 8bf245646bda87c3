"""The scoring engine against the plain definition: full-vocabulary logits at every position."""

import pytest
import torch
import torch.nn.functional as F

from softscope.engine.scoring import Scorer

from conftest import ARCHS, make_adapter, tiny_task


def reference_loss(a, task, P, examples):
    """One example at a time, no padding, full logits over every position: mean CE of the label tokens."""
    losses = []
    for ex in examples:
        text = a.encode(task.format(ex))
        lab = a.encode(" " + task.label_words[task.label_index(ex.label)])
        ids = torch.tensor([a.bos_ids + text + lab])
        emb = a.embed(ids)
        nb = len(a.bos_ids)
        emb = torch.cat([emb[:, :nb], P[None], emb[:, nb:]], 1)
        logits = a.model(inputs_embeds=emb).logits[0]
        start = nb + P.shape[0] + len(text)
        losses.append(F.cross_entropy(logits[start - 1:start - 1 + len(lab)], torch.tensor(lab), reduction="none"))
    return torch.cat(losses).mean()


@pytest.mark.parametrize("arch", ARCHS)
def test_label_loss_equals_full_logit_definition(arch):
    a = make_adapter(arch)
    task = tiny_task()
    torch.manual_seed(0)
    P = torch.randn(3, a.width) * 0.02
    exs = task.train[:6]  # different lengths → padding inside the batch
    sc = Scorer(a, task)
    ours = sc.label_loss(P, sc.rows(exs))
    assert torch.allclose(ours, reference_loss(a, task, P, exs), atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_never_changes_a_rows_scores(arch):
    a = make_adapter(arch)
    task = tiny_task()
    P = torch.randn(2, a.width) * 0.02
    sc = Scorer(a, task)
    rows = sc.rows(task.train[:5])
    batch = sc.class_logprobs(P, rows)
    alone = torch.cat([sc.class_logprobs(P, [r]) for r in rows])
    assert torch.allclose(batch, alone, atol=1e-5)


def test_per_row_prompts_equal_separate_calls(tiny):
    task = tiny_task()
    sc = Scorer(tiny, task)
    rows = sc.rows(task.train[:4])
    Ps = torch.randn(4, 3, tiny.width) * 0.02
    per_row = sc.label_loss_per_row(Ps, rows)
    separate = torch.stack([sc.label_loss(Ps[i], [rows[i]]) for i in range(4)])
    assert torch.allclose(per_row, separate, atol=1e-5)


def test_full_verbalizer_equals_first_for_single_token_words(tiny):
    task = tiny_task()
    P = torch.randn(2, tiny.width) * 0.02
    first = Scorer(tiny, task, verbalizer="first")
    full = Scorer(tiny, task, verbalizer="full")
    rows = first.rows(task.test)
    assert torch.allclose(first.class_logprobs(P, rows), full.class_logprobs(P, rows), atol=1e-5)


def test_predict_keeps_example_order(tiny):
    task = tiny_task()
    sc = Scorer(tiny, task)
    P = torch.randn(2, tiny.width) * 0.02
    lp = sc.predict(P, task.test, batch_size=3)
    for i in (0, 5, 11):
        assert torch.allclose(lp[i], sc.class_logprobs(P, sc.rows([task.test[i]]))[0], atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_prefix_reuse_gives_same_loss_and_gradient(arch):
    a = make_adapter(arch)
    task = tiny_task()
    rows_src = task.train[:8]
    fast, slow = Scorer(a, task), Scorer(a, task, share_prefix=False)
    rows = fast.rows(rows_src)
    assert fast.shared_positions(torch.zeros(3, a.width), rows) > 3  # BOS + prompt + "Sentence :"
    grads = []
    for sc in (fast, slow):
        P = (torch.randn(3, a.width, generator=torch.Generator().manual_seed(0)) * 0.02).requires_grad_()
        loss = sc.label_loss(P, rows)
        loss.backward()
        grads.append((loss.detach(), P.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)
    lp_fast = fast.class_logprobs(torch.zeros(3, a.width), rows)
    assert torch.allclose(lp_fast, slow.class_logprobs(torch.zeros(3, a.width), rows), atol=1e-5)
