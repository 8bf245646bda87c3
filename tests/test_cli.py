"""The CLI end to end on a tiny local model: train → eval → project → export, and one-line errors (exit 2)."""

import json

import pytest

from conftest import run_cli as run
from softscope.engine.stats import wilson_interval


def test_help_lists_commands(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for c in ("train", "eval", "project", "export", "models", "tasks"):
        assert c in out


def test_train_eval_project_export(tiny_model_dir, tiny_task_file, tmp_path, capsys):
    common = ["--model", str(tiny_model_dir), "--device", "cpu"]
    run_dir = tmp_path / "run"
    code, out, err = run(["train", "--task", str(tiny_task_file), "--tokens", "3", "--steps", "4", "--batch-size", "4",
                          "--checkpoint-every", "2", "--out", str(run_dir), *common], capsys)
    assert code == 0, err
    assert "final test accuracy" in out and "nearest tokens" in out and str(run_dir) in out
    code, out, err = run(["eval", str(run_dir / "prompt.safetensors"), "--task", str(tiny_task_file), "--json",
                          "--out", str(tmp_path / "ev"), *common], capsys)
    assert code == 0, err
    ev = json.loads(out)
    assert ev["ci95"] == pytest.approx(list(wilson_interval(round(ev["accuracy"] * 12), 12)))
    assert ev["interval"] == "wilson"
    summary = json.loads((run_dir / "train_summary.json").read_text())
    n = summary["final_eval_examples"]
    assert summary["final_ci95"] == pytest.approx(list(wilson_interval(round(summary["final_accuracy"] * n), n)))
    assert all(c["ci95"] == pytest.approx(list(wilson_interval(round(c["accuracy"] * c["examples"]), c["examples"])))
               for c in summary["checkpoints"])
    assert len((tmp_path / "ev" / "eval.jsonl").read_text().splitlines()) == 12
    code, out, err = run(["project", str(run_dir), "--metric", "cos", "--top-k", "2", "--json", *common], capsys)
    assert code == 0, err
    proj = json.loads(out)
    assert len(proj["ids"]) == 3 and len(proj["top"][0]) == 2 and proj["metric"] == "cos"
    code, out, err = run(["export", str(run_dir / "prompt.safetensors"), "--peft", str(tmp_path / "peft")], capsys)
    assert code == 0 and (tmp_path / "peft" / "adapter_model.safetensors").exists()
    code, out, err = run(["project", str(tmp_path / "peft"), *common], capsys)  # PEFT adapter dirs read back
    assert code == 0, err


@pytest.mark.parametrize("content,needle", [
    ("", "empty"),
    ('{"sentence": "x", "label": "a"}\n{"sentence": "y", "label": "b"}\n', "column"),
    ('{"text": "x", "label": "a"}\n{"text": "y", "label": "a"}\n', "class"),
])
def test_bad_task_files_exit_2_with_one_line(tmp_path, tiny_model_dir, capsys, content, needle):
    f = tmp_path / "data.jsonl"
    f.write_text(content)
    args = ["train", "--task", str(f), "--model", str(tiny_model_dir), "--device", "cpu", "--out", str(tmp_path / "o")]
    if needle == "column":
        args += ["--text-column", "text"]
    code, out, err = run(args, capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err.lower()
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_bad_flags_exit_2(tiny_model_dir, tiny_task_file, tmp_path, capsys):
    code, _, err = run(["train", "--task", str(tiny_task_file), "--tokens", "0", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "--tokens" in err
    code, _, err = run(["project", str(tmp_path / "missing.safetensors")], capsys)
    assert code == 2 and "does not exist" in err
