"""Start and stop a real Ray cluster on 127.0.0.1 for tests and benchmarks: a head node plus one more worker node."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args: str) -> None:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    r = subprocess.run([RAY, *args], capture_output=True, text=True, env=env, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"ray {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")


def start_cluster(nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 100) -> str:
    """`ray start --head` and nodes-1 more `ray start --address`, all on 127.0.0.1; returns the address."""
    port = _free_port()
    common = ["--node-ip-address=127.0.0.1", f"--num-cpus={cpus_per_node}", "--num-gpus=0",
              f"--object-store-memory={object_store_mb * 1024 * 1024}", "--disable-usage-stats"]
    _ray("start", "--head", f"--port={port}", "--include-dashboard=false", *common)
    address = f"127.0.0.1:{port}"
    for _ in range(nodes - 1):
        _ray("start", f"--address={address}", *common)
    return address


def stop_cluster() -> None:
    """Tear the cluster down (every Ray process this user started on the machine)."""
    subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)
