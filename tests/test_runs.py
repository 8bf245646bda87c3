"""Run-directory output helpers: every file is written whole or not at all."""

import pytest


def test_save_figure_is_atomic_and_closes_the_figure(tmp_path, monkeypatch):
    """A figure is written whole or not at all (a failing render leaves no file and no temp file behind)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from softscope.engine.runs import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "sub" / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not plt.fignum_exists(fig.number)
    fig2, _ = plt.subplots()
    monkeypatch.setattr(fig2, "savefig", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("render failed")))
    with pytest.raises(RuntimeError):
        save_figure(fig2, tmp_path / "b.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"] and not plt.fignum_exists(fig2.number)


def test_save_tensors_round_trips_with_metadata_and_leaves_no_temp_file(tmp_path):
    import torch
    from safetensors import safe_open

    from softscope.engine.runs import save_tensors

    t = torch.arange(6, dtype=torch.float32).view(2, 3).t()  # non-contiguous on purpose
    path = save_tensors(tmp_path / "d" / "x.safetensors", {"w": t}, {"note": "hi"})
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"note": "hi"} and torch.equal(f.get_tensor("w"), t)
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["x.safetensors"]


def test_a_field_added_since_a_run_was_written_matches_it_only_at_its_default(tmp_path):
    """run.json written before a config gained a field: reopening with that field at its default is the same
    setting (and the record adopts it); any other value is a listed difference."""
    import dataclasses

    from softscope.engine.errors import SoftscopeError
    from softscope.engine.runs import Run, fingerprint, read_json

    @dataclasses.dataclass
    class Old:
        steps: int = 3

    @dataclasses.dataclass
    class New(Old):
        trust_remote_code: bool = False

    with Run.open(tmp_path / "r", "train", fingerprint(Old())) as run:
        run.write_json("train_summary.json", {})
    with Run.open(tmp_path / "r", "train", fingerprint(New())) as run:
        assert run.existing
        run.write_json("eval_summary.json", {})
    assert read_json(tmp_path / "r" / "run.json")["settings"]["config"]["trust_remote_code"] is False
    with Run.open(tmp_path / "s", "train", fingerprint(Old())) as run:
        run.write_json("train_summary.json", {})
    with pytest.raises(SoftscopeError, match=r"trust_remote_code \(<unset> → true\)"):
        Run.open(tmp_path / "s", "train", fingerprint(New(trust_remote_code=True)))
    with pytest.raises(SoftscopeError, match=r"steps \(3 → 4\)"):
        Run.open(tmp_path / "s", "train", fingerprint(New(steps=4)))
