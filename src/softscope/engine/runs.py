"""Run directories: atomic writes and the JSON / JSONL readers every command and the report share."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Iterable

from .errors import SoftscopeError, warn
from .models import cpu_features


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temp file in the same folder + rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_tensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
    """Write tensors as a safetensors file atomically (safetensors, never pickle: loading runs no code)."""
    from safetensors.torch import save

    atomic_write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata))
    return Path(path)


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Render a matplotlib figure to PNG atomically (like every other output) and close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _default(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, set):
        return sorted(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(obj, indent=indent, default=_default, ensure_ascii=False)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, dumps(obj) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise SoftscopeError(f"{path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SoftscopeError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> None:
    """Write all rows at once, atomically."""
    atomic_write_text(path, "".join(dumps(r, indent=None) + "\n" for r in rows))


def append_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> None:
    """Append rows by rewriting the file atomically (files here are small; no torn lines on a crash)."""
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    atomic_write_text(path, old + "".join(dumps(r, indent=None) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Rows of a JSONL file ([] if absent). A torn last line (a write cut short) is dropped with a warning;
    an unreadable line before it is a one-line error naming the line."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise SoftscopeError(f"{path} is not UTF-8 JSONL: remove or restore it") from None
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == last:
                warn(f"{path} line {i + 1} is cut short (an interrupted write?): ignored")
                break
            raise SoftscopeError(f"{path} line {i + 1} is not valid JSON ({e.msg}): fix or remove that line") from None
    return rows


def versions() -> dict[str, str]:
    """Library versions recorded in every config.json so a run can be repeated."""
    out = {"python": platform.python_version()}
    for name in ("softscope", "torch", "transformers", "peft", "safetensors"):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:
            pass
    return out


def write_config(run_dir: str | os.PathLike, command: str, config: Any, **extra: Any) -> None:
    """config.json: the command, its full config, versions and anything extra (seed, data subset...)."""
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    write_json(Path(run_dir) / "config.json", {"command": command, "config": cfg, "versions": versions(),
                                               "machine": cpu_features(), **extra})
