"""The sweep executor: local vs a real two-node Ray cluster on loopback for every sweep command, a killed worker,
and the missing extra."""

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from softscope.engine.errors import SoftscopeError
from softscope.engine.executor import ExecutorOptions, Unit, WorkerContext, run_units


@dataclass
class ToyContext(WorkerContext):
    scale: int = 1
    pid: int = 0


def toy_setup(scale: int) -> ToyContext:
    """Stands in for loading a model: counts how often a process builds its context."""
    toy_setup.calls = getattr(toy_setup, "calls", 0) + 1
    return ToyContext(None, None, scale=scale, pid=os.getpid())


def toy_work(ctx: ToyContext, unit: Unit) -> dict:
    """A deterministic unit: depends only on its key/args and the context, like a seeded training unit."""
    import torch

    g = torch.Generator().manual_seed(unit.args["seed"])
    x = torch.randn(4, generator=g) * ctx.scale
    if unit.args.get("pid_dir"):
        with open(os.path.join(unit.args["pid_dir"], f"{os.getpid()}-{unit.key}"), "w"):
            pass
        time.sleep(unit.args.get("sleep", 0))
    return {"key": unit.key, "values": x.tolist(), "worker": not ctx.in_place and not ctx.progress}


UNITS = [Unit(f"u{i}", {"seed": 100 + i}) for i in range(8)]


def test_local_runs_every_unit_once_with_one_setup():
    toy_setup.calls = 0
    seen = []
    res = run_units(UNITS, toy_work, setup=toy_setup, setup_args=(3,), on_result=lambda u, r: seen.append(u.key),
                    progress=False, log=lambda line: None)
    assert toy_setup.calls == 1 and seen == [u.key for u in UNITS]
    assert not res["u0"]["worker"]  # the driver's own process: a unit writes in place
    import torch

    want = (torch.randn(4, generator=torch.Generator().manual_seed(105)) * 3).tolist()
    assert res["u5"]["values"] == want  # the plain definition, computed independently


def test_duplicate_keys_are_refused():
    with pytest.raises(SoftscopeError, match="same key"):
        run_units([Unit("a"), Unit("a")], toy_work, progress=False)


def test_bad_options_are_one_line_errors():
    with pytest.raises(SoftscopeError, match="--executor 'spark': use local or ray"):
        ExecutorOptions(executor="spark")
    with pytest.raises(SoftscopeError, match="--cpus-per-unit inf: give a finite number"):
        ExecutorOptions(cpus_per_unit=float("inf"))
    with pytest.raises(SoftscopeError, match="--gpus-per-unit -1"):
        ExecutorOptions(gpus_per_unit=-1.0)


def test_without_ray_the_error_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SoftscopeError) as e:
        run_units(UNITS, toy_work, options=ExecutorOptions(executor="ray"), progress=False)
    assert str(e.value) == "--executor ray needs Ray: pip install 'softscope[ray]'"


def test_scratch_folders_of_dead_workers_are_reclaimed(tmp_path, monkeypatch):
    """A SIGKILLed worker leaves its unit's scratch folder; the next sub_run on the machine removes it (its pid is
    gone), and keeps live workers' folders and other hosts' (a shared /tmp)."""
    import socket
    import subprocess

    from softscope.engine import executor

    zombie = subprocess.Popen(["true"])  # exits at once; not reaped until wait(): a killed, unreaped worker
    for _ in range(200):
        if Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.01)
    assert not executor.pid_alive(zombie.pid) and executor.pid_alive(os.getpid())
    root = tmp_path / "scratch"
    monkeypatch.setattr(executor, "scratch_root", lambda: root)
    host = socket.gethostname()
    names = {"dead": f"unit-{host}-{zombie.pid}-abc1", "live": f"unit-{host}-{os.getpid()}-x_9",
             "other host": f"unit-elsewhere-{zombie.pid}-q0", "not ours": "notes"}
    for name in names.values():
        (root / name / "w-0").mkdir(parents=True)
        (root / name / "w-0" / "metrics.jsonl").write_text("{}\n")
    seen = []

    def make(folder: Path) -> int:
        seen.append(folder)
        folder.mkdir()
        (folder / "run.json").write_text('{"kind": "train"}')
        return 7

    result, files = executor.sub_run(tmp_path / "out" / "w-0.5", False, make)
    zombie.wait()
    assert (result, files) == (7, {"run.json": b'{"kind": "train"}'})
    assert seen[0].name == "w-0.5" and seen[0].parent.parent == root
    assert seen[0].parent.name.startswith(f"unit-{host}-{os.getpid()}-")
    assert sorted(p.name for p in root.iterdir()) == sorted(names[k] for k in ("live", "other host", "not ours"))
    assert not (tmp_path / "out").exists()  # a worker never writes the driver's folder


def test_worker_env_names_folders_absolutely(tmp_path, monkeypatch):
    """PYTHONPATH and SOFTSCOPE_DATA reach Ray workers with the folders that exist here made absolute (a worker
    starts in another folder); other entries and variables pass as they are."""
    from softscope.engine import executor

    (tmp_path / "src").mkdir()
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["src", "/no/such/dir"]))
    monkeypatch.setenv("SOFTSCOPE_DATA", "data")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert executor._worker_env() == {"PYTHONPATH": os.pathsep.join([str(tmp_path / "src"), "/no/such/dir"]),
                                      "SOFTSCOPE_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}


# ---- a real local Ray cluster: a head node and one more worker node, both on this machine ---------------------
@pytest.fixture(scope="module")
def ray_cluster_at():
    """(address, temp dir) of the module's cluster: the temp dir names its processes (ray_cluster.cluster_pids)."""
    ray = pytest.importorskip("ray")
    from ray_cluster import start_cluster, stop_cluster

    address, tmp = start_cluster()
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import this test file
    try:
        yield address, tmp
    finally:
        ray.shutdown()
        stop_cluster(tmp)


@pytest.fixture(scope="module")
def ray_cluster(ray_cluster_at):
    return ray_cluster_at[0]


def test_ray_gives_the_same_results_as_local(ray_cluster):
    local = run_units(UNITS, toy_work, setup=toy_setup, setup_args=(3,), progress=False, log=lambda line: None)
    lines = []
    remote = run_units(UNITS, toy_work, setup=toy_setup, setup_args=(3,), progress=False, log=lines.append,
                       options=ExecutorOptions(executor="ray", ray_address=ray_cluster))
    assert all(r["worker"] for r in remote.values())  # a worker's context: no folder in place, no bars
    assert {k: r["values"] for k, r in remote.items()} == {k: r["values"] for k, r in local.items()}
    assert len(lines) == len(UNITS) and all(" done on " in line for line in lines)


def test_a_killed_worker_is_retried_and_recorded_once(ray_cluster, tmp_path):
    units = [Unit(f"k{i}", {"seed": i, "pid_dir": str(tmp_path), "sleep": 2.0}) for i in range(6)]
    killed = []

    def killer():  # kill the first worker process that starts a unit, while it sleeps inside the unit
        for _ in range(600):
            files = sorted(tmp_path.iterdir())
            if files:
                pid = int(files[0].name.split("-")[0])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.1)

    t = threading.Thread(target=killer)
    t.start()
    recorded = []
    res = run_units(units, toy_work, setup=toy_setup, setup_args=(1,), progress=False, log=lambda line: None,
                    on_result=lambda u, r: recorded.append(u.key),
                    options=ExecutorOptions(executor="ray", ray_address=ray_cluster))
    t.join()
    assert killed, "no worker was killed: the test did not exercise the fault"
    assert sorted(recorded) == sorted(u.key for u in units)  # every unit, each exactly once
    assert sorted(res) == sorted(u.key for u in units)
    started = [f.name.split("-", 1)[1] for f in tmp_path.iterdir()]
    assert len(started) > len(units)  # the killed unit really ran twice, and was still recorded once


def _rows(path):
    import json

    return sorted((json.loads(line) for line in path.read_text().splitlines()),
                  key=lambda r: (r["checkpoint"], r["target_seed"], r["source_layer"], r["target_layer"]))


def test_describe_over_checkpoints_on_ray_equals_local(ray_cluster, tiny_model_dir, tiny_task_file, tmp_path,
                                                       capsys):
    from dataclasses import replace

    from softscope.engine.config import TrainConfig
    from softscope.engine.training import train
    from softscope.methods.describe import DescribeConfig, describe

    run = tmp_path / "run"
    train(TrainConfig(model=str(tiny_model_dir), task=str(tiny_task_file), tokens=3, steps=4, checkpoint_every=2,
                      eval_examples=0, final_eval="none", device="cpu", lr=0.05), run, progress=False)
    dcfg = DescribeConfig(model=str(tiny_model_dir), device="cpu", layers="band:1-2", n_targets=2, max_new_tokens=4,
                          references=["is the movie review positive or negative"], control=True)
    loc = describe(run, dcfg, out=tmp_path / "local", progress=False)
    capsys.readouterr()
    ray = describe(run, replace(dcfg, executor="ray", ray_address=ray_cluster), out=tmp_path / "ray", progress=False)
    assert "control" in _ray_units(capsys.readouterr().err)  # the positive control is a unit like the checkpoints
    assert ray.summary["control"] == loc.summary["control"]
    local, remote = _rows(tmp_path / "local" / "descriptions.jsonl"), _rows(tmp_path / "ray" / "descriptions.jsonl")
    assert len(local) == (3 + 1) * 4 * 2  # (checkpoints + control) x layer pairs (band 1-2: 4) x target prompts
    for a, b in zip(local, remote, strict=True):
        assert a["text"] == b["text"] and a["cut"] == b["cut"]
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], float):
                assert b[k] == pytest.approx(a[k], abs=1e-6), k
            else:
                assert a[k] == b[k], k


def test_wayward_sweep_on_ray_equals_local(ray_cluster, tiny_model_dir, tiny_task_file, tmp_path):
    from dataclasses import replace

    from softscope.engine.runs import read_jsonl
    from softscope.methods.wayward import WaywardConfig, run_wayward

    cfg = WaywardConfig(model=str(tiny_model_dir), task=str(tiny_task_file), device="cpu", steps=3, batch_size=4,
                        lr=5e-2, gamma=[0, 0.5], test_examples=8, template="task",
                        target=["the movie was great and fun", "a bad film", "what a day"])
    run_wayward(cfg, tmp_path / "local", progress=False)
    run_wayward(replace(cfg, executor="ray", ray_address=ray_cluster), tmp_path / "ray", progress=False)
    key = lambda r: (r["target"], r["gamma"], r["seed"])  # noqa: E731
    local = sorted(read_jsonl(tmp_path / "local" / "wayward.jsonl"), key=key)
    remote = sorted(read_jsonl(tmp_path / "ray" / "wayward.jsonl"), key=key)
    assert len(local) == 3 * 2  # targets x gammas, each exactly once
    one = replace(cfg, gamma=[0.0], target=["a bad film"])  # one γ: a worker trains it as train_many with K = 1
    run_wayward(one, tmp_path / "local1", progress=False)
    run_wayward(replace(one, executor="ray", ray_address=ray_cluster), tmp_path / "ray1", progress=False)
    a1, b1 = (read_jsonl(tmp_path / d / "wayward.jsonl")[0] for d in ("local1", "ray1"))
    assert b1["accuracy"] == a1["accuracy"] and b1["projection"] == a1["projection"]
    assert b1["distance"] == pytest.approx(a1["distance"], abs=1e-4)
    for a, b in zip(local, remote, strict=True):
        for k in a:
            if k == "seconds":
                continue
            if isinstance(a[k], float):
                assert b[k] == pytest.approx(a[k], abs=1e-5), k
            else:
                assert a[k] == b[k], k


def test_relative_paths_do_not_depend_on_the_drivers_folder(ray_cluster, tiny_model_dir, tiny_task_file, tmp_path,
                                                           monkeypatch):
    """A sweep started in another folder with relative --model, --data-dir and --targets: the config holds them
    absolute before any unit is built (Ray workers run in the folder their node started in), and the Ray rows
    equal a local run given absolute paths."""
    import shutil

    from softscope.engine.runs import read_jsonl
    from softscope.methods.wayward import WaywardConfig, run_wayward

    data = tmp_path / "inputs" / "data"
    shutil.copytree(tiny_task_file, data / "sst2")  # the tiny task as the built-in sst2 of a data folder
    (tmp_path / "inputs" / "targets.json").write_text('["a bad film", "what a day"]')
    shutil.copytree(tiny_model_dir, tmp_path / "inputs" / "model")
    common = dict(task="sst2", device="cpu", steps=3, batch_size=4, lr=5e-2, gamma=[0, 0.5], test_examples=8,
                  template="task")
    absolute = WaywardConfig(model=str(tmp_path / "inputs" / "model"), data_dir=str(data),
                             targets=[str(tmp_path / "inputs" / "targets.json")], **common)
    run_wayward(absolute, tmp_path / "local", progress=False)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = WaywardConfig(model="../inputs/model", data_dir="../inputs/data", targets=["../inputs/targets.json"],
                        executor="ray", ray_address=ray_cluster, **common)
    assert (cfg.model, cfg.data_dir, cfg.targets) == (absolute.model, absolute.data_dir, absolute.targets)
    run_wayward(cfg, "out", progress=False)
    key = lambda r: (r["target"], r["gamma"])  # noqa: E731
    local, remote = (sorted(read_jsonl(d / "wayward.jsonl"), key=key) for d in (tmp_path / "local", Path("out")))
    assert [key(r) for r in local] == [("targets/000", 0.0), ("targets/000", 0.5), ("targets/001", 0.0), ("targets/001", 0.5)]
    assert_same(local, remote, "wayward")


# ---- the other sweep commands on the same cluster: rows equal to --executor local ------------------------------
def assert_same(a, b, path="row"):
    """Equal up to float tolerance (a worker may use another thread count), `seconds` aside."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            if k != "seconds":
                assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, abs=1e-5, nan_ok=True), path
    else:
        assert a == b, path


def _files(d):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))


def _on_ray(cfg, address):
    from dataclasses import replace

    return replace(cfg, executor="ray", ray_address=address)


def test_pez_and_rlprompt_weight_sweeps_on_ray_equal_local(ray_cluster, tiny_model_dir, tiny_task_file, tmp_path):
    import torch

    from softscope.engine.prompts import SoftPrompt
    from softscope.engine.runs import read_jsonl
    from softscope.methods.pez import PezConfig, pez
    from softscope.methods.rlprompt import RLPromptConfig, rlprompt

    common = dict(model=str(tiny_model_dir), task=str(tiny_task_file), device="cpu", holdout=6)
    pcfg = PezConfig(**common, tokens=3, steps=2, batch_size=4, checkpoint_every=1, eval_examples=0, test_examples=4,
                     fluency_weight=[0, 0.5])
    rcfg = RLPromptConfig(**common, tokens=2, steps=2, prompts_per_step=2, batch_size=2, hidden=16, top_k=8,
                          eval_every=1, eval_examples=4, test_examples=4, fluency_weight=[0, 1])
    for kind, fn, cfg in (("pez", pez, pcfg), ("rlprompt", rlprompt, rcfg)):
        local, remote = tmp_path / f"{kind}-local", tmp_path / f"{kind}-ray"
        fn(cfg, local, progress=False)
        fn(_on_ray(cfg, ray_cluster), remote, progress=False)
        assert_same(read_jsonl(local / f"{kind}.jsonl"), read_jsonl(remote / f"{kind}.jsonl"), kind)
        assert _files(local) == _files(remote)  # each weight's sub-run came back whole
        for w in ("w-0", "w-0.5" if kind == "pez" else "w-1"):
            a, b = (SoftPrompt.load(d / w / "hard_prompt.safetensors") for d in (local, remote))
            assert torch.equal(a.tensor, b.tensor) and a.extra["ids"] == b.extra["ids"]
            assert b.extra["run"] == str(remote / w)  # the driver's folder, not the worker's scratch copy
    # resume by key, wherever it runs: the Ray sweep grown by one weight, locally, trains only that weight
    before = {p: p.read_bytes() for p in (tmp_path / "pez-ray").rglob("*") if p.is_file() and "w-" in str(p)}
    grown = pez(PezConfig(**{**pcfg.__dict__, "fluency_weight": [0, 0.5, 0.9]}), tmp_path / "pez-ray", progress=False)
    assert [r["fluency_weight"] for r in grown["runs"]] == [0, 0.5, 0.9]
    assert all(p.read_bytes() == data for p, data in before.items())  # the landed weights were not redone
    assert (tmp_path / "pez-ray" / "w-0.9" / "pez_summary.json").exists()


def test_a_worker_killed_while_training_is_retried_and_its_scratch_reclaimed(ray_cluster_at, tiny_model_dir,
                                                                           tiny_task_file, tmp_path, capsys):
    """SIGKILL a Ray worker in the middle of a PEZ weight's training (checkpoints already in its scratch folder):
    Ray re-runs the unit, each weight is recorded once, the rows and files equal --executor local, and the killed
    worker's scratch folder is removed by a later unit's sub_run."""
    import socket

    from ray_cluster import cluster_pids

    from softscope.engine.executor import scratch_root
    from softscope.engine.runs import read_jsonl
    from softscope.methods.pez import PezConfig, pez

    address, tmp = ray_cluster_at
    cfg = PezConfig(model=str(tiny_model_dir), task=str(tiny_task_file), device="cpu", holdout=6, tokens=3, steps=24,
                    batch_size=4, checkpoint_every=1, eval_examples=0, test_examples=4, fluency_weight=[0, 0.5])
    pez(cfg, tmp_path / "local", progress=False)
    capsys.readouterr()
    root, prefix = scratch_root(), f"unit-{socket.gethostname()}-"
    killed, stop = [], threading.Event()

    def killer():  # the first of this cluster's workers whose unit has written its 5th checkpoint
        while not stop.is_set() and not killed:
            for d in root.glob(prefix + "*"):
                pid = int(d.name[len(prefix):].split("-")[0])
                if any(d.glob("*/checkpoints/step-00005.safetensors")) and pid in cluster_pids(tmp):
                    os.kill(pid, signal.SIGKILL)
                    killed.append((pid, d))
                    return
            time.sleep(0.02)

    t = threading.Thread(target=killer)
    t.start()
    try:
        pez(_on_ray(cfg, address), tmp_path / "ray", progress=False)
    finally:
        stop.set()
        t.join()
    assert killed, "no worker was killed mid-training: the test did not exercise the fault"
    (pid, scratch), = killed
    done = [line.split()[1:4:2] for line in capsys.readouterr().err.splitlines() if line.startswith("unit ")]
    assert sorted(key for key, _ in done) == ["w-0", "w-0.5"]  # every weight recorded exactly once
    assert all(not worker.endswith(f":{pid}") for _, worker in done)  # the killed worker finished nothing
    assert [r["fluency_weight"] for r in read_jsonl(tmp_path / "ray" / "pez.jsonl")] == [0, 0.5]
    assert_same(read_jsonl(tmp_path / "local" / "pez.jsonl"), read_jsonl(tmp_path / "ray" / "pez.jsonl"), "pez")
    assert _files(tmp_path / "local") == _files(tmp_path / "ray")
    assert not scratch.exists()  # reclaimed by the retried unit's sub_run (its pid is gone)
    assert not list(root.glob(f"{prefix}{pid}-*"))


def _ray_units(err: str) -> list[str]:
    """The keys of the units a Ray sweep's log says finished, each on a worker process (never the driver's)."""
    done = [line.split() for line in err.splitlines() if line.startswith("unit ") and " done on " in line]
    assert all(not w[3].endswith(f":{os.getpid()}") and "(local)" not in w for w in done)
    return sorted(w[1] for w in done)


def test_tradeoff_on_ray_equals_local(ray_cluster, tiny_model_dir, tiny_task_file, tmp_path, capsys):
    from softscope.engine.runs import read_jsonl
    from softscope.methods.tradeoff import TradeoffConfig, tradeoff

    cfg = TradeoffConfig(model=str(tiny_model_dir), task=str(tiny_task_file), device="cpu", examples=6,
                         soft_tokens=3, soft_steps=2, pez_weights=[0, 0.5], pez_tokens=3, pez_steps=2, rl_weights=[1],
                         rl_tokens=2, rl_steps=2, rl_prompts_per_step=2, rl_batch_size=2, selection_examples=4,
                         holdout=6)
    tradeoff(cfg, tmp_path / "local", progress=False)
    capsys.readouterr()
    tradeoff(_on_ray(cfg, ray_cluster), tmp_path / "ray", progress=False)
    # the reference soft prompt is a unit too: it trains on a worker, beside the tuners
    assert _ray_units(capsys.readouterr().err) == ["pez/w-0", "pez/w-0.5", "reference", "rlprompt/w-1"]
    local, remote = (read_jsonl(tmp_path / d / "tradeoff.jsonl") for d in ("local", "ray"))
    assert [(r["method"], r["weight"]) for r in local] == [
        ("soft prompt", None), ("projection (cos)", None), ("projection (l2)", None), ("PEZ", 0.0), ("PEZ", 0.5),
        ("RLPrompt", 1.0)]
    assert_same(local, remote, "tradeoff")
    for sub in ("pez", "rlprompt"):
        assert_same(read_jsonl(tmp_path / "local" / sub / f"{sub}.jsonl"),
                    read_jsonl(tmp_path / "ray" / sub / f"{sub}.jsonl"), sub)
    assert _files(tmp_path / "local") == _files(tmp_path / "ray")


def test_bias_run_on_ray_equals_local(ray_cluster, tiny_model_dir, tiny_task_file, tmp_path, capsys):
    from softscope.engine.runs import read_json, read_jsonl
    from softscope.methods.bias import BiasRunConfig, run

    cfg = BiasRunConfig(model=str(tiny_model_dir), task=str(tiny_task_file), device="cpu", feature="word:Spielberg",
                        favoured="positive", strengths=[0.0, 1.0], seeds=1, train_examples=16, tokens=2, steps=2,
                        batch_size=4, heldout=8, layers="0:1,1:2", pool="elaborated", n_targets=1, demos=2,
                        max_new_tokens=3, positive_control=True)
    run(cfg, tmp_path / "local", progress=False)
    capsys.readouterr()
    run(_on_ray(cfg, ray_cluster), tmp_path / "ray", progress=False)
    assert _ray_units(capsys.readouterr().err) == ["positive-control", "s0.00-seed0", "s1.00-seed0"]
    pc = [read_json(tmp_path / d / "positive_control.json") for d in ("local", "ray")]
    assert pc[0]["prompt"] == "positive-control" and pc[0]["descriptions"] == 2
    assert_same(pc[0], pc[1], "positive_control")
    key = lambda r: r["prompt"]  # noqa: E731  (Ray records units as they finish)
    local, remote = (sorted(read_jsonl(tmp_path / d / "bias.jsonl"), key=key) for d in ("local", "ray"))
    assert [r["prompt"] for r in local] == ["s0.00-seed0", "s1.00-seed0"]
    assert_same(local, remote, "bias")
    for r in local:
        name = f"prompts/{r['prompt']}/descriptions.jsonl"
        assert_same(read_jsonl(tmp_path / "local" / name), read_jsonl(tmp_path / "ray" / name), name)
    assert _files(tmp_path / "local") == _files(tmp_path / "ray")


@pytest.mark.parametrize("command", [["wayward"], ["describe", "run"], ["bias", "run"], ["pez"], ["rlprompt"],
                                     ["tradeoff"]])
def test_every_sweep_command_takes_the_executor_options(command, capsys, tmp_path):
    """One option group on every sweep command: a bad value is a one-line error (exit 2) before any work."""
    from softscope.cli import main

    for flag, value, message in (("--executor", "spark", "error: --executor 'spark': use local or ray"),
                                 ("--gpus-per-unit", "-1", "error: --gpus-per-unit -1: use a value >= 0")):
        with pytest.raises(SystemExit) as e:
            main([*command, flag, value, "--out", str(tmp_path / "out")])
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert e.value.code == 2 and err == [message]
    assert not (tmp_path / "out").exists()
