"""Nearest-token projection (l2 / cos / dot) and the straight-through projection PEZ uses."""

import pytest
import torch

from softscope.engine.errors import SoftscopeError
from softscope.engine.models import token_embeddings
from softscope.engine.projection import nearest_ids, project, project_straight_through, similarity


@pytest.mark.parametrize("metric", ["l2", "cos"])
def test_projecting_token_embeddings_returns_the_tokens(tiny, metric):
    ids = tiny.encode("the movie was great")
    P = token_embeddings(tiny)[ids] + 1e-4
    proj = project(tiny, P, metric, top_k=3)
    assert proj.ids == ids
    assert proj.text == "the movie was great"
    assert len(proj.top[0]) == 3


def test_l2_reports_distances_in_increasing_order(tiny):
    P = torch.randn(2, tiny.width)
    proj = project(tiny, P, "l2", top_k=4)
    E = token_embeddings(tiny)
    d = [t["score"] for t in proj.top[0]]
    assert d == sorted(d)
    assert abs(d[0] - float((E[proj.ids[0]] - P[0]).norm())) < 1e-4


def test_dot_is_raw_inner_product(tiny):
    P = torch.randn(1, tiny.width)
    E = token_embeddings(tiny)
    assert torch.allclose(similarity(P, E, "dot"), P @ E.T)
    assert int(nearest_ids(P, E, "dot")[0]) == int((P @ E.T).argmax())


def test_straight_through_forward_projects_backward_passes(tiny):
    E = token_embeddings(tiny)
    P = torch.randn(3, tiny.width, requires_grad=True)
    Q = project_straight_through(P, E, "cos")
    assert torch.allclose(Q, E[nearest_ids(P.detach(), E, "cos")], atol=1e-6)
    (Q * torch.arange(3.0)[:, None]).sum().backward()
    assert torch.allclose(P.grad, torch.arange(3.0)[:, None].expand_as(P))


def test_bad_metric_and_width(tiny):
    with pytest.raises(SoftscopeError, match="l2, cos, dot"):
        project(tiny, torch.randn(2, tiny.width), "manhattan")
    with pytest.raises(SoftscopeError, match="width"):
        project(tiny, torch.randn(2, 7), "l2")
