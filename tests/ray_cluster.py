"""Start and stop a real Ray cluster on loopback for tests and benchmarks: a head node plus more worker nodes.

Ray replaces 127.0.0.1 by the machine's network address (it wants a remotely reachable one), so the cluster uses
127.0.0.2, another loopback address: no traffic leaves the machine. Each cluster has its own temp dir, and
stop_cluster kills only that cluster's processes (never `ray stop`, which would end other test runs' clusters).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
HOST = "127.0.0.2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _ray(*args: str) -> None:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    r = subprocess.run([RAY, *args], capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"ray {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")


def start_cluster(nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 100) -> tuple[str, str]:
    """`ray start --head` and nodes-1 more `ray start --address` on 127.0.0.2; returns (address, temp dir)."""
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    common = [f"--node-ip-address={HOST}", f"--num-cpus={cpus_per_node}", "--num-gpus=0",
              f"--object-store-memory={object_store_mb * 1024 * 1024}", "--disable-usage-stats"]
    _ray("start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={tmp}", *common)
    address = f"{HOST}:{port}"
    for _ in range(nodes - 1):
        _ray("start", f"--address={address}", *common)
    return address, tmp


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(p.name))
    return tree


def cluster_pids(tmp: str) -> set[int]:
    """This cluster's processes (those naming its temp dir) and everything they started: its raylets and workers."""
    roots = [int(x) for x in subprocess.run(["pgrep", "-f", tmp], capture_output=True, text=True).stdout.split()]
    tree, todo, pids = _children(), list(roots), set()
    while todo:
        pid = todo.pop()
        if pid not in pids and pid != os.getpid():
            pids.add(pid)
            todo += tree.get(pid, [])
    return pids


def stop_cluster(tmp: str) -> None:
    """Kill this cluster's processes (`cluster_pids`)."""
    for pid in cluster_pids(tmp):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
