"""Test helper (not a test module): run softscope CLI commands in forked child processes, optionally SIGKILLed at
one write boundary, and report what happened as JSON.

    python tests/faults.py SPEC.json RESULT.json

The parent imports softscope, runs the setup and the uninterrupted run itself (which warms every lazy import),
then forks a real process per killed or concurrent command (a fresh interpreter per kill would cost tens of
seconds each on a loaded machine). A child kills itself through `runs.write_hook`, the seam every
atomic write calls before and after its rename, so a kill can land between any two writes and between a temp
file and its rename. SPEC keys:
  setup:      [args, ...] run one after another first (e.g. train the run that describe reads)
  jobs:       [args, ...] run at the same time (the concurrency test); RESULT: {"jobs": [{rc, err}]}
  args, resume, root, window: the kill test. `args` (with "{out}") runs uninterrupted into root/full while every
              write event is logged; then for each event in the window (the first event matching window[0] through
              the first later one matching window[1]; all events if absent) a child is killed at that event in
              root/k<i> and `resume` is run there. RESULT: {"events": [...], "cases": [{i, event, killed, resumed, err}]}
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import traceback


def _child(args: list[str], err_path: str, kill_at: int | None = None, log: list | None = None) -> int:
    """Fork a child running `softscope ARGS`; returns its pid. Its stdout/stderr go to err_path."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        from softscope.engine import runs

        count = [0]
        log_fd = os.open(err_path + ".events", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

        def hook(event, path):
            count[0] += 1
            os.write(log_fd, f"{event} {path}\n".encode())
            if count[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        runs.write_hook = hook
        from softscope.cli import main

        try:
            main(args)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _run(args: list[str], err_path: str, kill_at: int | None = None) -> tuple[int, str]:
    rc = _wait(_child(args, err_path, kill_at))
    with open(err_path, encoding="utf-8", errors="replace") as f:
        return rc, f.read()


def _run_here(args: list[str], events_path: str) -> tuple[int, str]:
    """Run `softscope ARGS` in this process, logging its write events; (exit code, stderr)."""
    import contextlib
    import io

    from softscope.cli import main
    from softscope.engine import runs

    log = open(events_path, "w", encoding="utf-8")
    runs.write_hook = lambda event, path: log.write(f"{event} {path}\n")
    err = io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main(args)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        runs.write_hook = None
        log.close()
    return code, err.getvalue()


def _fill(args: list[str], out: str) -> list[str]:
    return [a.replace("{out}", out) for a in args]


def main(spec_path: str, result_path: str) -> None:
    import torch

    torch.set_num_threads(1)  # no thread pool in the parent: forking stays safe
    spec = json.load(open(spec_path))
    root = spec.get("root") or os.path.dirname(result_path)
    res: dict = {"setup": []}
    for i, args in enumerate(spec.get("setup", [])):
        rc, err = _run_here(args, os.path.join(root, f"setup{i}.events"))
        res["setup"].append({"rc": rc, "err": err})
        if rc != 0:
            break
    if "jobs" in spec and all(s["rc"] == 0 for s in res["setup"]):
        pids = [_child(a, os.path.join(root, f"job{i}.log")) for i, a in enumerate(spec["jobs"])]
        res["jobs"] = []
        for i, pid in enumerate(pids):
            rc = _wait(pid)
            res["jobs"].append({"rc": rc, "err": open(os.path.join(root, f"job{i}.log")).read()})
    if "args" in spec and all(s["rc"] == 0 for s in res["setup"]):
        full = os.path.join(root, "full")
        rc, err = _run_here(_fill(spec["args"], full), os.path.join(root, "full.events"))
        events = [line.rstrip("\n").replace(full, "{out}")
                  for line in open(os.path.join(root, "full.events"), encoding="utf-8")]
        res.update(full={"rc": rc, "err": err}, events=events, cases=[])
        lo, hi = 0, len(events) - 1
        if rc != 0:
            lo, hi = 0, -1  # the uninterrupted run failed: nothing to kill (the test reports its error)
        elif spec.get("window"):
            start, end = (re.compile(w) for w in spec["window"])
            lo = next(i for i, e in enumerate(events) if start.search(e))
            hi = next(i for i in range(lo, len(events)) if end.search(events[i]))
        for i in range(lo, hi + 1):
            out = os.path.join(root, f"k{i}")
            killed, _ = _run(_fill(spec["args"], out), os.path.join(root, f"k{i}.log"), kill_at=i + 1)
            resumed, err = _run(_fill(spec["resume"], out), os.path.join(root, f"k{i}.resume.log"))
            res["cases"].append({"i": i, "event": events[i], "out": out, "killed": killed, "resumed": resumed,
                                 "err": err[-2000:]})
    json.dump(res, open(result_path, "w"), indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:3])
