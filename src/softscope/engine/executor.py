"""Sweep executor: a sweep is a list of independent units with stable keys; run them here or on a Ray cluster.

Every sweep command describes its work as `Unit`s and one module-level `work(ctx, unit)` function; `ctx` is a
`WorkerContext` (a method's own subclass): the driver's, or `setup(*setup_args)` (load the model and task) built
once per worker process and kept. `run_units` returns each unit's result to the driver, which alone writes the run
folder, so no shared file system is needed and every write stays atomic. A unit that writes a folder of its own (a training
sub-run) does so through `sub_run`: in place when it runs in the driver's process, else in a scratch folder on the
worker whose files come back with the result and are written on the driver by `land`.

    local  in this process, one unit after another (the default; today's behaviour)
    ray    Ray tasks (`ray.init(address)`; "auto" joins a running cluster); a task whose worker dies is retried by Ray
           and its result is recorded once, by key
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tqdm import tqdm

from .config import option, validate
from .errors import SoftscopeError
from .runs import LOCK, OWNER, RECORD, Run, make_paths_absolute

if TYPE_CHECKING:
    from .models import ModelAdapter
    from .tasks import Task

RAY_INSTALL = "pip install 'softscope[ray]'"


@dataclass
class WorkerContext:
    """What every unit of a sweep shares in one process; each method's context subclasses it. `in_place`: this is
    the driver's process (a unit writes its sub-run folder itself); `progress`: show bars. A worker's has neither."""

    adapter: ModelAdapter | None
    task: Task | None
    in_place: bool = field(default=True, kw_only=True)
    progress: bool = field(default=True, kw_only=True)


@dataclass(frozen=True)
class Unit:
    """One independent piece of a sweep: a stable key (used for resume and de-duplication) and its arguments."""

    key: str
    args: dict = field(default_factory=dict)


@dataclass
class ExecutorOptions:
    """Where a sweep's units run (shared by every sweep command's config)."""

    executor: str = option("local", "local (this process) or ray (Ray tasks; see --ray-address)",
                           choices=("local", "ray"))
    ray_address: str | None = option(None, "Ray cluster address for --executor ray: auto joins a running cluster, host:port "
                                      "a given one (default: start a local Ray instance)")
    cpus_per_unit: float = option(1.0, "CPUs Ray reserves for each unit", ge=0)
    gpus_per_unit: float = option(0.0, "GPUs Ray reserves for each unit (e.g. 1, or 0.5 to share one)", ge=0)

    def __post_init__(self) -> None:
        validate(self)
        make_paths_absolute(self)  # units must not depend on the driver's working folder (a worker runs elsewhere)


# Settings that change where units run, never what they compute: a sweep's fingerprint leaves them out.
PLACEMENT_FIELDS = ("executor", "ray_address", "cpus_per_unit", "gpus_per_unit")

_CONTEXTS: dict[tuple, WorkerContext] = {}  # per worker process: setup results, so a model loads once per worker


def _context(setup: Callable[..., WorkerContext] | None, setup_args: tuple) -> WorkerContext | None:
    """A worker's context: built once by `setup`, then kept; it writes no folder in place and shows no bars."""
    if setup is None:
        return None
    key = (setup.__module__, setup.__qualname__, repr(setup_args))
    if key not in _CONTEXTS:
        ctx = setup(*setup_args)
        ctx.in_place = ctx.progress = False
        _CONTEXTS[key] = ctx
    return _CONTEXTS[key]


def _run_one(work: Callable, setup: Callable | None, setup_args: tuple, unit: Unit) -> tuple[str, Any, dict]:
    """Run one unit; returns (key, result, info) with the worker's host:pid and seconds for the driver's log."""
    t0 = time.time()
    result = work(_context(setup, setup_args), unit)
    return unit.key, result, {"worker": f"{socket.gethostname()}:{os.getpid()}", "seconds": time.time() - t0}


def run_units(units: list[Unit], work: Callable[[WorkerContext | None, Unit], Any], *,
              setup: Callable[..., WorkerContext] | None = None, setup_args: tuple = (),
              ctx: WorkerContext | None = None, options: ExecutorOptions | None = None,
              on_result: Callable[[Unit, Any], None] | None = None, progress: bool = True,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every unit and return {key: result}; `on_result(unit, result)` runs on the driver as each unit finishes.

    Keys must be unique. Locally, `ctx` (the driver's, its model already loaded) is used as is when given, else
    `setup(*setup_args)`; on Ray each worker process builds its own from `setup(*setup_args)` and keeps it.
    `log` gets one line per unit (its worker and seconds); by default on stderr for Ray runs, none for local runs,
    which keep their one progress bar.
    """
    options = options or ExecutorOptions()
    keys = [u.key for u in units]
    if len(set(keys)) != len(keys):
        raise SoftscopeError("a sweep produced two units with the same key: this is a bug in the sweep definition")
    if log is None:
        log = (lambda line: print(line, file=sys.stderr)) if options.executor == "ray" else (lambda line: None)
    results: dict[str, Any] = {}
    by_key = {u.key: u for u in units}

    def record(key: str, result: Any, info: dict) -> None:
        if key in results:  # a retried unit that had already reported: keep the first result, record it once
            return
        results[key] = result
        if on_result:
            on_result(by_key[key], result)
        log(f"unit {key} done on {info['worker']} in {info['seconds']:.1f} s")

    if not units:
        return results
    if options.executor == "local":
        local_ctx = ctx if ctx is not None else (setup(*setup_args) if setup else None)
        bar = tqdm(total=len(units), desc="units", disable=not progress, unit="unit")
        try:
            for u in units:
                bar.set_postfix(running=1, finished=bar.n, failed=0)
                t0 = time.time()
                result = work(local_ctx, u)
                record(u.key, result, {"worker": f"{socket.gethostname()}:{os.getpid()} (local)",
                                       "seconds": time.time() - t0})
                bar.update(1)
        finally:
            bar.close()
        return results
    _run_ray(units, work, setup, setup_args, options, record, progress)
    return results


def ray_module():
    """Ray itself, or a one-line error naming the install command."""
    try:
        import ray
    except ImportError:
        raise SoftscopeError(f"--executor ray needs Ray: {RAY_INSTALL}") from None
    return ray


def _run_ray(units, work, setup, setup_args, options: ExecutorOptions, record, progress) -> None:
    ray = ray_module()
    if not ray.is_initialized():
        env = _worker_env()
        host = (options.ray_address or "").rsplit(":", 1)[0]
        local = {"_node_ip_address": host} if host.startswith("127.") else {}  # a cluster on this machine's loopback
        ray.init(address=options.ray_address, log_to_driver=False, include_dashboard=False,
                 runtime_env={"env_vars": env} if env else None, **local)
    # a worker that dies mid-unit (killed, lost node) is a system failure: Ray re-runs the task elsewhere
    task = ray.remote(max_retries=5, retry_exceptions=False)(_run_one).options(
        num_cpus=options.cpus_per_unit, num_gpus=options.gpus_per_unit)
    pending = {task.remote(work, setup, setup_args, u): u.key for u in units}
    slots = _slots(ray, options)
    bar = tqdm(total=len(units), desc="units (ray)", disable=not progress, unit="unit")
    try:
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            key = pending.pop(ref)
            try:
                record(*ray.get(ref))
            except ray.exceptions.RayTaskError as e:  # the unit's own error (bad input or a bug), not a lost worker
                for r in pending:
                    ray.cancel(r)
                bar.set_postfix(running=0, finished=bar.n, failed=1)
                if isinstance(getattr(e, "cause", None), SoftscopeError):
                    raise e.cause from None
                cause = getattr(e, "cause", None)
                what = f"{type(cause).__name__}: {cause}" if cause is not None else str(e).strip().splitlines()[-1]
                raise SoftscopeError(f"unit {key} failed on Ray: {what}") from None
            bar.update(1)
            bar.set_postfix(running=min(len(pending), slots), finished=bar.n, failed=0)
    finally:
        bar.close()


# what a Ray worker needs from the driver's environment to import the same code and stay offline
_WORKER_ENV = ("PYTHONPATH", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "SOFTSCOPE_DATA", "OMP_NUM_THREADS")


def _worker_env() -> dict[str, str]:
    """The driver's _WORKER_ENV variables, with the folders in PYTHONPATH and SOFTSCOPE_DATA that exist here made
    absolute: a worker starts in another folder."""
    env = {k: v for k, v in os.environ.items() if k in _WORKER_ENV}
    absolute = lambda p: str(Path(p).resolve()) if p and Path(p).exists() else p  # noqa: E731
    if "PYTHONPATH" in env:
        env["PYTHONPATH"] = os.pathsep.join(absolute(p) for p in env["PYTHONPATH"].split(os.pathsep))
    if "SOFTSCOPE_DATA" in env:
        env["SOFTSCOPE_DATA"] = absolute(env["SOFTSCOPE_DATA"])
    return env


def _slots(ray, options: ExecutorOptions) -> int:
    """How many units the cluster can run at once (for the progress bar's 'running' count)."""
    res = ray.cluster_resources()
    cpu = res.get("CPU", 1) / options.cpus_per_unit if options.cpus_per_unit else float("inf")
    gpu = res.get("GPU", 0) / options.gpus_per_unit if options.gpus_per_unit else float("inf")
    return max(1, int(min(cpu, gpu)))


# ---- units that write a folder of their own -------------------------------------------------------------------
def sub_run(dest: str | Path, in_place: bool, write: Callable[[Path], Any]) -> tuple[Any, dict[str, bytes] | None]:
    """(result, files) of `write(folder)`, a unit that writes a sub-run folder (a training run, say) meant for `dest`.

    In the driver's own process (`in_place`) it writes `dest` itself, so a killed local sweep resumes inside it;
    on a worker it writes a scratch folder (see `scratch_root`) whose files come back with the result, for `land`
    on the driver. Each call first reclaims the scratch folders of this machine's dead worker processes."""
    if in_place:
        return write(Path(dest)), None
    root = scratch_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    reclaim_scratch(root)
    with tempfile.TemporaryDirectory(prefix=f"unit-{socket.gethostname()}-{os.getpid()}-", dir=root) as tmp:
        folder = Path(tmp) / Path(dest).name
        result = write(folder)
        return result, folder_files(folder)


def scratch_root() -> Path:
    """Where workers keep the scratch folders of their units: one folder per user on each machine
    (<tmp>/softscope-<uid>/unit-<host>-<pid>-<random>), so a SIGKILLed worker's leftovers are findable by pid."""
    return Path(tempfile.gettempdir()) / f"softscope-{os.getuid()}"


_SCRATCH = re.compile(r"unit-(?P<host>.+)-(?P<pid>\d+)-[^-]+")


def reclaim_scratch(root: Path) -> list[Path]:
    """Remove this machine's scratch folders under `root` whose worker process is gone (a killed worker cannot
    clean up after itself); folders of live processes and of other hosts (a shared /tmp) are kept. Returns them."""
    host, gone = socket.gethostname(), []
    for p in root.glob("unit-*"):
        m = _SCRATCH.fullmatch(p.name)
        if m and m["host"] == host and not pid_alive(int(m["pid"])):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p)
    return gone


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): alive as far as we can tell


def folder_files(folder: Path) -> dict[str, bytes]:
    """Every file of a sub-run folder (not its lock or a temp file), in the order they were last written."""
    files = [p for p in folder.rglob("*") if p.is_file() and p.name not in (LOCK, OWNER)
             and not (p.name.startswith(".") and p.name.endswith(".tmp"))]
    files.sort(key=lambda p: (p.stat().st_mtime_ns, str(p)))
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def land(dest: str | Path, files: dict[str, bytes] | None) -> None:
    """Write the files a worker's `sub_run` returned into `dest` (nothing when it ran in place), through a Run of
    the kind and settings the worker recorded, so a folder there with other settings is refused. Files land in the
    worker's order: a folder cut short by a kill looks like a run cut short, never like a finished one."""
    if files is None:
        return
    rec = json.loads(files[RECORD])
    with Run.open(dest, rec["kind"], rec.get("settings"), command=rec.get("command")) as run:
        for name, data in files.items():
            if name != RECORD:
                run.write_bytes(name, data)
