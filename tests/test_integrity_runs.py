"""Run folders (issue 12): kinds, the lock, the settings fingerprint, atomic resume state, torn JSONL lines,
non-finite training, write errors and umask. Every refusal is exit 2 with a one-line message and leaves the files
that were there byte-identical."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from softscope.cli import main
from softscope.engine import runs
from softscope.engine.config import TrainConfig
from softscope.engine.errors import SoftscopeError
from softscope.engine.runs import Run, read_jsonl
from softscope.engine.training import LossTerm, train

from conftest import tiny_task

HERE = Path(__file__).parent


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def error_lines(err: str) -> list[str]:
    """The error message's lines (progress lines such as the compute banner precede it on stderr)."""
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("error:")]


def refused(capsys, args: list[str], first_line: str, *folders: Path) -> str:
    """Run the CLI in-process; assert exit 2, the first line of the message, and the folders byte-identical."""
    before = {f: snapshot(f) for f in folders}
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert error_lines(err) == [first_line]
    for f in folders:
        assert snapshot(f) == before[f], f
    return err


def train_args(model_dir, task_dir, out, *extra):
    return ["train", "--model", str(model_dir), "--task", str(task_dir), "--tokens", "3", "--steps", "8",
            "--batch-size", "4", "--lr", "0.03", "--checkpoint-every", "4", "--eval-examples", "4", "--device", "cpu",
            "--final-eval", "subset", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def train_run(tiny_model_dir, tiny_task_file, tmp_path_factory):
    """A finished tiny training run made by the CLI (in-process)."""
    out = tmp_path_factory.mktemp("runs") / "train"
    main(train_args(tiny_model_dir, tiny_task_file, out))  # main returns normally on success
    return out


def cfg(**kw):
    base = dict(task="tiny", tokens=3, steps=8, batch_size=4, lr=3e-2, checkpoint_every=4, eval_examples=4,
                final_eval="none", seed=0)
    base.update(kw)
    return TrainConfig(**base)


# ---- kinds ---------------------------------------------------------------------------------------------------
def test_run_folder_records_kind_and_settings(train_run):
    rec = json.loads((train_run / "run.json").read_text())
    assert rec["kind"] == "train" and rec["settings"]["config"]["lr"] == 0.03
    assert rec["settings"]["config"]["task"] == str(Path(rec["settings"]["config"]["task"]).resolve())
    assert not (train_run / "state.json").exists() and (train_run / "state.safetensors").exists()


def test_train_into_a_describe_folder_is_refused(capsys, tiny_model_dir, tiny_task_file, tmp_path):
    d = tmp_path / "desc"
    with Run.open(d, "describe", {"config": {"x": 1}}) as r:
        r.write_json("describe_summary.json", {"task": "t"})
    refused(capsys, train_args(tiny_model_dir, tiny_task_file, d),
            f"error: {d} holds a describe run: train writes only into a new folder or a train run; choose another --out",
            d)


def test_eval_into_a_train_run_is_refused(capsys, train_run, tiny_task_file):
    refused(capsys, ["eval", str(train_run), "--task", str(tiny_task_file), "--out", str(train_run)],
            f"error: {train_run} holds a train run: eval writes only into a new folder or an eval run; "
            "choose another --out", train_run)


def test_export_peft_into_a_train_run_is_refused(capsys, train_run):
    refused(capsys, ["export", str(train_run), "--peft", str(train_run)],
            f"error: {train_run} holds a train run: export writes only into a new folder or an export run; "
            "choose another --out", train_run)


def test_a_folder_of_other_files_is_refused(capsys, tiny_model_dir, tiny_task_file, tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    refused(capsys, train_args(tiny_model_dir, tiny_task_file, d),
            f"error: {d} is not empty and holds no softscope run (notes.txt): train writes only into a new or empty "
            "folder; choose another --out", d)
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"]  # not even a lock file left behind


def test_existing_run_without_resume_is_refused(capsys, train_run, tiny_model_dir, tiny_task_file):
    refused(capsys, train_args(tiny_model_dir, tiny_task_file, train_run),
            f"error: {train_run} already holds a train run: pass --resume to continue it or choose another --out",
            train_run)


def test_failed_start_leaves_no_folder(capsys, tiny_model_dir, tmp_path):
    out = tmp_path / "new"
    with pytest.raises(SystemExit) as e:
        main(train_args(tiny_model_dir, tmp_path / "no-such-task.jsonl", out))
    assert e.value.code == 2 and not out.exists()


# ---- the lock ----------------------------------------------------------------------------------------------
def test_a_locked_folder_is_in_use(capsys, train_run, tiny_model_dir, tiny_task_file):
    with Run.open(train_run, "train", None):  # this process holds it, as a running command would
        refused(capsys, train_args(tiny_model_dir, tiny_task_file, train_run, "--resume"),
                f"error: {train_run} is in use by process {os.getpid()}: wait for it to finish or choose another --out",
                train_run)


# ---- the fingerprint ---------------------------------------------------------------------------------------
def test_resume_with_other_settings_lists_them(capsys, train_run, tiny_model_dir, tiny_task_file):
    refused(capsys, ["train", "--out", str(train_run), "--resume", "--lr", "0.1", "--tokens", "4"],
            f"error: {train_run} holds a train run with other settings: lr (0.03 → 0.1); tokens (3 → 4); rerun with "
            "its settings or choose another --out", train_run)


def test_resume_of_a_finished_run_reproduces_it(train_run):
    before = load_file(str(train_run / "prompt.safetensors"))["prompt"]
    main(["train", "--out", str(train_run), "--resume"])
    assert torch.equal(load_file(str(train_run / "prompt.safetensors"))["prompt"], before)


# ---- resume state ------------------------------------------------------------------------------------------
def test_truncated_state_is_a_clean_error(capsys, tiny_model_dir, tiny_task_file, tmp_path):
    out = tmp_path / "r"
    main(train_args(tiny_model_dir, tiny_task_file, out))
    state = out / "state.safetensors"
    state.write_bytes(state.read_bytes()[:100])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["train", "--out", str(out), "--resume"])
    lines = error_lines(capsys.readouterr().err)
    assert e.value.code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {state} is damaged (")


def test_torn_metrics_line_is_dropped_on_resume(tiny, tmp_path, capsys):
    out = tmp_path / "r"
    train(cfg(), out, adapter=tiny, task=tiny_task(), progress=False)
    full = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text(full[:-7])  # a torn last line
    assert len(read_jsonl(out / "metrics.jsonl")) == full.count("\n") - 1
    assert "is cut short" in capsys.readouterr().err
    train(cfg(), out, resume=True, adapter=tiny, task=tiny_task(), progress=False)
    assert (out / "metrics.jsonl").read_text() == full  # recomputed from the committed state


# ---- non-finite training -----------------------------------------------------------------------------------
def test_non_finite_loss_stops_at_its_step_and_keeps_the_last_checkpoint(tiny, tmp_path):
    calls = []

    def bad(P):  # finite for 5 steps, then NaN
        calls.append(1)
        return P.sum() * (float("nan") if len(calls) > 5 else 0.0)

    out = tmp_path / "r"
    with pytest.raises(SoftscopeError, match=r"^training stopped at step 6: the loss is not finite .* the checkpoint "
                                             r"of step 4 stays resumable$"):
        train(cfg(), out, adapter=tiny, task=tiny_task(), progress=False, loss_terms=[LossTerm("bad", bad)])
    st = load_file(str(out / "state.safetensors"))
    assert all(bool(torch.isfinite(v).all()) for v in st.values())
    assert sorted(p.name for p in (out / "checkpoints").glob("*.safetensors")) == ["step-00000.safetensors",
                                                                                 "step-00004.safetensors"]
    assert not (out / "prompt.safetensors").exists()


def test_non_finite_tensors_are_never_saved(tmp_path):
    with pytest.raises(SoftscopeError, match="holds NaN or inf"):
        runs.save_tensors(tmp_path / "x.safetensors", {"p": torch.tensor([1.0, float("inf")])})
    assert list(tmp_path.iterdir()) == []


# ---- write errors and modes --------------------------------------------------------------------------------
@pytest.mark.parametrize("errno_, where", [(28, "fsync"), (30, "mkstemp")])
def test_write_errors_are_one_line(capsys, tiny_model_dir, tiny_task_file, tmp_path, monkeypatch, errno_, where):
    def fail(*a, **k):
        raise OSError(errno_, os.strerror(errno_))

    monkeypatch.setattr(runs.os if where == "fsync" else runs.tempfile, where, fail)
    out = tmp_path / "r"
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(train_args(tiny_model_dir, tiny_task_file, out))
    lines = error_lines(capsys.readouterr().err)
    assert e.value.code == 2 and lines == [f"error: cannot write {out / 'run.json'}: {os.strerror(errno_)}"]


def test_outputs_follow_the_umask(train_run):
    mask = os.umask(0)
    os.umask(mask)
    for f in ("run.json", "config.json", "prompt.safetensors", "state.safetensors", "metrics.jsonl"):
        assert (train_run / f).stat().st_mode & 0o777 == 0o666 & ~mask, f


# ---- kills and races (real processes, see tests/faults.py) -------------------------------------------------
def faults(tmp_path: Path, spec: dict) -> dict:
    root = tmp_path / "faults"
    root.mkdir()
    (root / "spec.json").write_text(json.dumps({"root": str(root), **spec}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, str(HERE / "faults.py"), str(root / "spec.json"), str(root / "result.json")],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads((root / "result.json").read_text())


def test_train_killed_at_every_write_of_a_checkpoint_resumes_bit_for_bit(tiny_model_dir, tiny_task_file, tmp_path):
    args = train_args(tiny_model_dir, tiny_task_file, "{out}")
    res = faults(tmp_path, {"args": args, "resume": ["train", "--out", "{out}", "--resume"],
                            "window": ["step-00004", "after .*state.safetensors"]})
    assert res["full"]["rc"] == 0, res["full"]["err"]
    # one checkpoint = prompt file, its .json, metrics.jsonl, the state: each before and after its rename
    assert [e.split("/")[-1] for e in (c["event"] for c in res["cases"])] == [
        "step-00004.safetensors", "step-00004.safetensors", "step-00004.json", "step-00004.json",
        "metrics.jsonl", "metrics.jsonl", "state.safetensors", "state.safetensors"]
    full = Path(res["cases"][0]["out"]).parent / "full"
    want = load_file(str(full / "prompt.safetensors"))["prompt"]
    for c in res["cases"]:
        assert c["killed"] == -9 and c["resumed"] == 0, c
        assert torch.equal(load_file(str(Path(c["out"]) / "prompt.safetensors"))["prompt"], want), c["event"]
        assert (Path(c["out"]) / "metrics.jsonl").read_bytes() == (full / "metrics.jsonl").read_bytes(), c["event"]
        assert not list(Path(c["out"]).rglob("*.tmp")), c["event"]


def test_two_processes_on_one_out_one_wins(tiny_model_dir, tiny_task_file, tmp_path):
    same = str(tmp_path / "same")
    res = faults(tmp_path, {"setup": [train_args(tiny_model_dir, tiny_task_file, tmp_path / "solo")],
                            "jobs": [train_args(tiny_model_dir, tiny_task_file, same)] * 2})
    rcs = sorted(j["rc"] for j in res["jobs"])
    assert rcs == [0, 2], res
    loser = next(j for j in res["jobs"] if j["rc"] == 2)["err"].strip().splitlines()[-1]
    assert loser.startswith(f"error: {same} is in use by process "), loser
    solo, same = snapshot(tmp_path / "solo"), snapshot(Path(same))
    assert sorted(solo) == sorted(same)  # complete: the same files as a run alone
    assert solo["metrics.jsonl"] == same["metrics.jsonl"]
    for name in [n for n in solo if n.endswith(".safetensors")]:
        a, b = load_file(str(tmp_path / "solo" / name)), load_file(str(tmp_path / "same" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def _without(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def test_describe_killed_at_every_write_of_a_checkpoint_resumes_to_the_same_rows(tiny_model_dir, tiny_task_file,
                                                                                 tmp_path):
    src = tmp_path / "src"
    args = ["describe", str(src), "--layers", "1:1,2:3", "--max-new-tokens", "3", "--n-targets", "1",
            "--references", "the sentiment of a review", "--device", "cpu", "--out", "{out}"]
    res = faults(tmp_path, {"setup": [train_args(tiny_model_dir, tiny_task_file, src)], "args": args,
                            "resume": args, "window": ["before .*descriptions.jsonl", "after .*describe_summary.json"]})
    assert res["full"]["rc"] == 0, res["full"]["err"]
    # three checkpoints (steps 0, 4, 8), each appended whole, then the summary: before and after each rename
    assert [e.split("/")[-1] for e in (c["event"] for c in res["cases"])] == [
        "descriptions.jsonl"] * 6 + ["describe_summary.json"] * 2
    full = tmp_path / "faults" / "full"
    want = json.loads((full / "describe_summary.json").read_text())
    for c in res["cases"]:
        out = Path(c["out"])
        assert c["killed"] == -9 and c["resumed"] == 0, c
        assert (out / "descriptions.jsonl").read_bytes() == (full / "descriptions.jsonl").read_bytes(), c["event"]
        got = json.loads((out / "describe_summary.json").read_text())
        assert _without(got, "seconds") == _without(want, "seconds"), c["event"]


def test_wayward_killed_at_every_write_of_a_target_resumes_to_the_same_rows(tiny_model_dir, tiny_task_file, tmp_path):
    args = ["wayward", "--model", str(tiny_model_dir), "--task", str(tiny_task_file), "--target", "the movie was great",
            "--target", "a bad film", "--gamma", "0,1", "--steps", "2", "--batch-size", "4", "--test-examples", "6",
            "--device", "cpu", "--out", "{out}"]
    res = faults(tmp_path, {"args": args, "resume": ["wayward", "--out", "{out}", "--resume"],
                            "window": ["before .*prompts/", "after .*wayward.jsonl"]})
    assert res["full"]["rc"] == 0, res["full"]["err"]
    # the first target: its two prompts (file + .json each), then its rows appended together
    assert [e.split("/")[-1].split("__")[-1] for e in (c["event"] for c in res["cases"])] == [
        "gamma-0.safetensors", "gamma-0.safetensors", "gamma-0.json", "gamma-0.json",
        "gamma-1.safetensors", "gamma-1.safetensors", "gamma-1.json", "gamma-1.json", "wayward.jsonl", "wayward.jsonl"]
    full = tmp_path / "faults" / "full"
    want = [_without(r, "seconds") for r in read_jsonl(full / "wayward.jsonl")]
    for c in res["cases"]:
        out = Path(c["out"])
        assert c["killed"] == -9 and c["resumed"] == 0, c
        assert [_without(r, "seconds") for r in read_jsonl(out / "wayward.jsonl")] == want, c["event"]
        for p in (full / "prompts").glob("*.safetensors"):
            assert torch.equal(load_file(str(p))["prompt"], load_file(str(out / "prompts" / p.name))["prompt"])


# ---- sweeps reuse only under the same settings -------------------------------------------------------------
def test_pez_reuse_with_another_lr_is_refused(capsys, tiny_model_dir, tiny_task_file, tmp_path):
    out = tmp_path / "pez"
    args = ["pez", "--model", str(tiny_model_dir), "--task", str(tiny_task_file), "--tokens", "3", "--steps", "2",
            "--batch-size", "4", "--checkpoint-every", "1", "--eval-examples", "0", "--holdout", "6",
            "--test-examples", "4", "--fluency-weight", "0", "--device", "cpu", "--out", str(out)]
    main(args)
    refused(capsys, args + ["--lr", "0.1"],
            f"error: {out} holds a pez run with other settings: lr (0.3 → 0.1); rerun with its settings or choose "
            "another --out", out)
    main(args + ["--fluency-weight", "0,0.5"])  # a grown weight list reuses w-0 and adds w-0.5
    assert json.loads((out / "run.json").read_text())["settings"]["config"]["fluency_weight"] == [0.0, 0.5]


def test_pez_into_a_train_run_is_refused(capsys, train_run, tiny_model_dir, tiny_task_file):
    refused(capsys, ["pez", "--model", str(tiny_model_dir), "--task", str(tiny_task_file), "--out", str(train_run)],
            f"error: {train_run} holds a train run: pez writes only into a new folder or a pez run; "
            "choose another --out", train_run)


def test_tradeoff_reuse_with_another_soft_lr_is_refused(capsys, tiny_model_dir, tiny_task_file, tmp_path):
    out = tmp_path / "t"
    args = ["tradeoff", "--model", str(tiny_model_dir), "--task", str(tiny_task_file), "--examples", "6",
            "--soft-tokens", "3", "--soft-steps", "2", "--selection-examples", "4", "--holdout", "6",
            "--pez-weights", "", "--rl-weights", "", "--device", "cpu", "--out", str(out)]
    main(args)
    refused(capsys, args + ["--soft-lr", "0.1"],
            f"error: {out} holds a tradeoff run with other settings: soft_lr (0.03 → 0.1); rerun with its settings "
            "or choose another --out", out)
    # the soft prompt it reuses is a train run fingerprinted by the tradeoff's settings too
    soft = json.loads((out / "soft" / "run.json").read_text())
    assert soft["kind"] == "train" and soft["settings"]["tradeoff"]["soft_lr"] == 0.03


def test_report_never_overwrites_another_file(capsys, train_run, tmp_path):
    mine = tmp_path / "notes.html"
    mine.write_text("<html>my notes</html>")
    refused(capsys, ["report", str(train_run), "--out", str(mine)],
            f"error: {mine} exists and is not a softscope report: choose another --out", tmp_path)
