"""Run folders: one `Run` owns each output folder (kind, lock, settings fingerprint, atomic state), plus the
atomic writers and the JSON / JSONL readers every command and the report share.

A command opens its folder with `Run.open(path, kind, settings, resume=...)`; everything it writes goes through
the Run (write_json, write_jsonl, append_jsonl, save_tensors, save_figure, commit_state). The folder records its
kind and settings in run.json; a second process on the same folder is refused while the first holds the lock.
See the README section "Run folders".
"""
# size: the run folder: atomic writes, lock, settings fingerprint, resume state and the kind registry — one mechanism every command relies on.

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from ..records import Record, RecordError, RunConfig, record_type
from .errors import SoftscopeError, warn
from .models import cpu_features
from .tasks import BUILTIN

@dataclass(frozen=True)
class Kind:
    """A run kind, registered by the module whose command writes it; `legacy_*` say how a folder written before
    run.json existed is recognised (files it alone holds, checked first or last; the `command` its config.json
    recorded, default the kind's name)."""

    name: str
    legacy_command: str | None = None
    legacy_files: tuple[str, ...] = ()
    legacy_marker: tuple[str, ...] = ()


KINDS: dict[str, Kind] = {}  # filled by register_kind as the modules that write runs are imported


def register_kind(name: str, *, legacy_command: str | None = None, legacy_files: tuple[str, ...] = (),
                  legacy_marker: tuple[str, ...] = ()) -> str:
    """Declare a run kind (once, at import of the module that writes it); returns the name to open runs with."""
    kind = Kind(name, legacy_command, tuple(legacy_files), tuple(legacy_marker))
    if KINDS.get(name, kind) != kind:
        raise ValueError(f"run kind {name!r} registered twice with different rules")
    KINDS[name] = kind
    return name


RECORD = "run.json"  # kind + settings fingerprint
LOCK = ".softscope.lock"  # flock'ed for the run's lifetime (released by the kernel if the process dies)
OWNER = ".softscope.pid"  # the holder's pid, for the "in use" message
STATE = "state.safetensors"  # resume state: tensors + JSON state in the header, one atomic file
PATH_FIELDS = ("model", "policy", "task", "data_dir", "source", "prompt", "targets")

# Test seam: called as write_hook("before" | "after", path) around the rename of every atomic write, so a test
# can kill the process at any write boundary. None in normal use.
write_hook: Callable[[str, Path], None] | None = None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # what open() would give a new file: outputs follow the user's umask (0644 normally)


def _os_error(path: Any, e: OSError) -> SoftscopeError:
    return SoftscopeError(f"cannot write {getattr(e, 'filename', None) or path}: {e.strerror or e}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temp file in the same folder + rename, so a crash never leaves half a file.

    Files get the user's umask (mkstemp alone would make them 0600); an OSError (read-only folder, full disk)
    becomes a one-line SoftscopeError."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _MODE)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if write_hook:
            write_hook("before", path)
        os.replace(tmp, path)
        tmp = None
        if write_hook:
            write_hook("after", path)
    except OSError as e:
        raise _os_error(path, e) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_tensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
    """Write tensors as a safetensors file atomically (safetensors, never pickle: loading runs no code).

    Non-finite floating values are refused: nothing softscope saves may hold NaN or inf."""
    import torch
    from safetensors.torch import save

    for k, v in tensors.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise SoftscopeError(f"refusing to save {Path(path).name}: tensor {k!r} holds NaN or inf values")
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


def finite(obj: Any) -> Any:
    """`obj` with every NaN or infinite float replaced by null: a run file holds standard JSON, and "no value" (a
    correlation over constant scores, the perplexity of an empty reading) reads as null everywhere."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, dumps(finite(obj)) + "\n")


def declared(name: str, obj: Any) -> Any:
    """`obj` in the shape of the record declared for a file called `name` (records.record_type): an undeclared key,
    or a file with no declared record, is a RecordError, so a run folder holds only what its records declare."""
    if isinstance(obj, Record):
        return obj.to_dict()
    t = record_type(Path(name).name, obj)
    if t is None:
        raise RecordError(f"no record type is declared for {Path(name).name}: declare one in softscope.records")
    return [t.of(x) for x in obj] if isinstance(obj, list) and t.ROWS else t.of(obj)


def read_records(path: str | os.PathLike, as_type: type | None = None) -> Any:
    """A run file read into its declared record type: a list of records for JSONL, one record for JSON (unknown
    keys ignored, older keys mapped). A missing JSONL reads as []; a broken file is the usual one-line error; a
    file with no declared type comes back as parsed JSON."""
    p = Path(path)
    if p.suffix == ".jsonl":
        rows = read_jsonl(p)
        t = as_type or record_type(p.name, rows[0] if rows else None)
        return [t.from_dict(r) for r in rows] if t else rows
    obj = read_json(p)
    t = as_type or record_type(p.name, obj)
    if t is not None and isinstance(obj, list) and t.ROWS:  # a JSON list of rows (compare.json)
        return [t.from_dict(x) for x in obj]
    return t.from_dict(obj) if t else obj


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise SoftscopeError(f"{path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SoftscopeError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None


def _jsonl_text(rows: Iterable[Any]) -> str:
    return "".join(dumps(finite(r), indent=None) + "\n" for r in rows)


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> None:
    """Write all rows at once, atomically."""
    atomic_write_text(path, _jsonl_text(rows))


def append_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> None:
    """Append rows by rewriting the file atomically (files here are small; no torn lines on a crash).

    The old rows are re-read (a torn last line is dropped), so a damaged tail never survives an append."""
    atomic_write_text(path, _jsonl_text([*read_jsonl(path), *rows]))


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


def config_dict(config: Any) -> dict:
    """A config dataclass (or dict) as a JSON-ready dict whose path fields that exist on disk are absolute, so a
    run records where its inputs really were and a resume from another folder compares equal."""
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    cfg = json.loads(dumps(cfg))
    for k in PATH_FIELDS:
        if k in cfg:
            cfg[k] = resolve_path(k, cfg[k])
    return cfg


def make_paths_absolute(config: Any) -> None:
    """Make a config's path fields (PATH_FIELDS) that exist here absolute, in place, as config_dict records them:
    a sweep's config is shipped to Ray workers, which run in another folder and must read the same files."""
    for k in PATH_FIELDS:
        if hasattr(config, k):
            setattr(config, k, resolve_path(k, getattr(config, k)))


def resolve_path(key: str, v: Any) -> Any:
    """Value `v` of config field `key` with every path in it that exists here made absolute (aliases, Hub ids and
    built-in task names as they are)."""
    if isinstance(v, list):
        return [resolve_path(key, x) for x in v]
    return str(Path(v).resolve()) if isinstance(v, str) and v and _is_path(key, v) else v


def _is_path(key: str, value: str) -> bool:
    if key == "task":
        if value in BUILTIN:
            return False
    return os.path.exists(value)


class Settings(dict):
    """A fingerprint (what run.json records) that also knows its config's field defaults, which are not recorded:
    a field added after a run was written matches that run while it holds its default."""

    defaults: dict[str, Any] = {}


def _field_defaults(config: Any) -> dict[str, Any]:
    """config.<field> -> its default, as config.json would hold it (dataclass configs only)."""
    if not dataclasses.is_dataclass(config):
        return {}
    out = {}
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            out[f"config.{f.name}"] = json.loads(dumps(f.default))
        elif f.default_factory is not dataclasses.MISSING:
            out[f"config.{f.name}"] = json.loads(dumps(f.default_factory()))
    return out


def fingerprint(config: Any, **inputs: Any) -> Settings:
    """The settings a run's results depend on: the full config plus named inputs (source path, γ, init, ...)."""
    fp = Settings(config=config_dict(config))
    fp.defaults = _field_defaults(config)
    for k, v in inputs.items():
        v = json.loads(dumps(v))
        fp[k] = resolve_path(k, v) if k in PATH_FIELDS else v
    return fp


def write_config(run_dir: str | os.PathLike, command: str, config: Any, **extra: Any) -> None:
    """config.json: the command, its full config (paths resolved), versions and anything extra (seed, data subset)."""
    write_json(Path(run_dir) / "config.json", RunConfig.of({"command": command, "config": config_dict(config),
                                                            "versions": versions(), "machine": cpu_features(),
                                                            **extra}))


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(_flat(v, key) if isinstance(v, dict) and v else {key: v})
    return out


def settings_diff(old: dict, new: dict, ignore: Iterable[str] = ()) -> list[str]:
    """'field (old → new)' for every leaf that differs; `config.` is left off the names. A config field the old
    settings lack is no difference while the new value is that field's default (`Settings.defaults`)."""
    a, b = _flat(old), _flat(new)
    defaults = getattr(new, "defaults", {})
    skip = set(ignore)
    out = []
    for k in sorted(set(a) | set(b)):
        name = k[len("config."):] if k.startswith("config.") else k
        if name in skip or k in skip or a.get(k, "<unset>") == b.get(k, "<unset>"):
            continue
        if k not in a and k in defaults and b[k] == defaults[k]:  # added since the run was written, left at default
            continue
        out.append(f"{name} ({_brief(a.get(k, '<unset>'))} → {_brief(b.get(k, '<unset>'))})")
    return out


def _brief(v: Any) -> str:
    s = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v
    return s if len(s) <= 40 else s[:37] + "..."


def _legacy_kind(path: Path) -> str | None:
    """The kind of a folder written before run.json existed: from files only one kind writes, else from the command
    its config.json recorded (the longest registered command it starts with)."""
    for k in KINDS.values():
        if any((path / f).exists() for f in k.legacy_files):
            return k.name
    if (path / "config.json").exists():
        try:
            cmd = str(read_json(path / "config.json").get("command", ""))
        except (SoftscopeError, AttributeError):
            return None
        hits = [(len(c), k.name) for k in KINDS.values() for c in [k.legacy_command or k.name]
                if cmd == c or cmd.startswith(c + " ")]
        return max(hits)[1] if hits else None
    for k in KINDS.values():
        if any((path / f).exists() for f in k.legacy_marker):
            return k.name
    return None


def saved_config(path: str | os.PathLike) -> dict | None:
    """The config a run folder records (run.json's settings, else config.json's), or None: what --resume reuses."""
    path = Path(path)
    for name, get in ((RECORD, lambda d: (d.get("settings") or {}).get("config")),
                      ("config.json", lambda d: d.get("config"))):
        if (path / name).exists():
            d = read_json(path / name)
            cfg = get(d) if isinstance(d, dict) else None
            if isinstance(cfg, dict):
                return cfg
    return None



def a(word: str) -> str:
    """The word with its indefinite article: "an eval", "a train"."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word

class Run:
    """One output folder owned by one command for its lifetime.

    `Run.open(path, kind, settings, resume=...)` creates or checks the folder and locks it; use it as a context
    manager (or call close()). `settings` is the fingerprint (see `fingerprint`): on reuse it must equal the
    recorded one except for the `growable` fields (those a resumed sweep may extend); None means a one-shot
    command whose outputs are simply replaced. `resume`: True = the folder must hold a run of this kind,
    False = it must not, None = reuse one if there (sweeps). Nothing is written until the first write, so a
    command that fails before writing leaves the folder as it was.
    """

    def __init__(self, path: Path, kind: str, settings: dict | None, command: str | None):
        self.path, self.kind, self.settings, self.command = path, kind, settings, command or kind
        self.existing = False  # the folder held a run of this kind when opened (resume / reuse)
        self._lock = None
        self._created_dir = self._created_lock = self._recorded = False

    # ---- opening ------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, kind: str, settings: dict | None = None, *, resume: bool | None = None,
             growable: Iterable[str] = (), command: str | None = None) -> "Run":
        if kind not in KINDS:
            raise ValueError(f"unknown run kind {kind!r}: register it with runs.register_kind")
        run = cls(Path(path), kind, settings, command)
        run._acquire()
        try:
            run._check(resume, tuple(growable))
        except BaseException:
            run.close(failed=True)
            raise
        return run

    def _acquire(self) -> None:
        from filelock import FileLock, Timeout

        p = self.path
        if p.exists() and not p.is_dir():
            raise SoftscopeError(f"{p} is a file, not a folder: choose another --out")
        try:
            self._created_dir = not p.exists()
            p.mkdir(parents=True, exist_ok=True)
            self._created_lock = not (p / LOCK).exists()
            lock = FileLock(str(p / LOCK), timeout=0, mode=_MODE)
            try:
                lock.acquire()
            except Timeout:
                self._created_lock = False
                pid = self._owner()
                raise SoftscopeError(f"{p} is in use by process {pid or '(unknown)'}: wait for it to finish or "
                                     "choose another --out") from None
            self._lock = lock
            (p / OWNER).write_text(f"{os.getpid()}\n")
        except OSError as e:
            self.close(failed=True)
            raise _os_error(p, e) from None
        except BaseException:
            self.close(failed=True)
            raise

    def _owner(self) -> int | None:
        try:
            return int((self.path / OWNER).read_text().strip())
        except (OSError, ValueError):
            return None

    def recorded(self) -> tuple[str | None, dict | None]:
        """(kind, settings) the folder records: run.json, else inferred from an older softscope's files."""
        rec = self.path / RECORD
        if rec.exists():
            d = read_json(rec)
            if not isinstance(d, dict) or not isinstance(d.get("kind"), str) or not d["kind"]:
                raise SoftscopeError(f"{rec} is not a softscope run record: choose another --out")
            return d["kind"], d.get("settings")
        kind = _legacy_kind(self.path)
        if kind is None:
            return None, None
        old = None
        if (self.path / "config.json").exists():
            c = read_json(self.path / "config.json")
            old = {"config": c.get("config")} if isinstance(c, dict) and isinstance(c.get("config"), dict) else None
        return kind, old

    def _contents(self) -> list[str]:
        return sorted(n.name for n in self.path.iterdir() if n.name not in (LOCK, OWNER)
                      and not (n.name.startswith(".") and n.name.endswith(".tmp")))

    def _check(self, resume: bool | None, growable: tuple[str, ...]) -> None:
        p, names = self.path, self._contents()
        kind, old = self.recorded() if names else (None, None)
        if names and kind is None:
            shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
            raise SoftscopeError(f"{p} is not empty and holds no softscope run ({shown}): {self.command} writes only "
                                 "into a new or empty folder; choose another --out")
        if kind is not None and kind != self.kind:
            raise SoftscopeError(f"{p} holds {a(kind)} run: {self.command} writes only into a new folder or "
                                 f"{a(self.kind)} run; choose another --out")
        self.existing = kind is not None
        if resume and not self.existing:
            raise SoftscopeError(f"nothing to resume in {p} (no {self.kind} run there): run without --resume")
        if resume is False and self.existing and self.settings is not None:
            raise SoftscopeError(f"{p} already holds {a(kind)} run: pass --resume to continue it or choose another --out")
        if self.existing and self.settings is not None and old is not None:
            legacy = not (p / RECORD).exists()
            new = self.settings
            if legacy:  # older folders recorded the config only, and fields added since are unknown to them
                new = {"config": {k: v for k, v in self.settings.get("config", {}).items() if k in old["config"]}}
            diff = settings_diff(old, new, growable)
            if diff:
                raise SoftscopeError(f"{p} holds {a(kind)} run with other settings: {'; '.join(diff)}; rerun with its "
                                     "settings or choose another --out")
        if self.existing:
            self._clean_temp_files()
        if self.existing and self.settings is not None and not (p / RECORD).exists():
            self.record()  # adopt an older folder

    def _clean_temp_files(self) -> None:
        """Remove temp files a killed writer left (never inside a nested folder that is a run of its own)."""
        stack = [self.path]
        while stack:
            d = stack.pop()
            for n in d.iterdir():
                if n.is_dir():
                    if not (n / LOCK).exists() and not (n / RECORD).exists():
                        stack.append(n)
                elif n.name.startswith(".") and n.name.endswith(".tmp"):
                    n.unlink(missing_ok=True)

    # ---- writing -------------------------------------------------------------------------------------------
    def record(self) -> None:
        """Write run.json (kind and settings) now; the first write does it anyway."""
        rec = {"kind": self.kind, "command": self.command, "settings": self.settings}
        if self.existing and (self.path / RECORD).exists():  # keep the record unless a growable field grew
            old = read_json(self.path / RECORD)
            if self.settings is None or old.get("settings") == self.settings:
                self._recorded = True
                return
        write_json(self.path / RECORD, declared(RECORD, rec))
        self._recorded = True

    def file(self, name: str | os.PathLike) -> Path:
        """The path of `name` inside the run folder (records the run's kind on the first write)."""
        if not self._recorded:
            self.record()
        return self.path / name

    def write_json(self, name: str, obj: Any) -> Path:
        """One JSON object, through the record declared for `name` (see `declared`)."""
        write_json(self.file(name), declared(name, obj))
        return self.path / name

    def write_text(self, name: str, text: str) -> Path:
        atomic_write_text(self.file(name), text)
        return self.path / name

    def write_bytes(self, name: str, data: bytes) -> Path:
        atomic_write_bytes(self.file(name), data)
        return self.path / name

    def write_jsonl(self, name: str, rows: Iterable[Any]) -> Path:
        """All rows at once, each through the record declared for `name`."""
        write_jsonl(self.file(name), [declared(name, r) for r in rows])
        return self.path / name

    def append_jsonl(self, name: str, rows: Iterable[Any]) -> Path:
        """Rows appended (atomically), each through the record declared for `name`."""
        append_jsonl(self.file(name), [declared(name, r) for r in rows])
        return self.path / name

    def read_jsonl(self, name: str) -> list[dict]:
        return read_jsonl(self.path / name)

    def read_records(self, name: str) -> Any:
        """A file of this run as its declared records (see `read_records`)."""
        return read_records(self.path / name)

    def save_tensors(self, name: str, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
        return save_tensors(self.file(name), tensors, metadata)

    def save_figure(self, fig: Any, name: str, dpi: int = 110) -> Path:
        return save_figure(fig, self.file(name), dpi)

    def write_config(self, config: Any, **extra: Any) -> Path:
        path = self.file("config.json")
        write_config(self.path, self.command, config, kind=self.kind, **extra)
        return path

    # ---- resume state: one atomic file ---------------------------------------------------------------------
    def commit_state(self, tensors: dict, state: dict) -> Path:
        """Tensors and the JSON state in one safetensors file (the state in its header): written whole or not
        at all, so a kill at any instant leaves the previous state or this one, never a mix."""
        return self.save_tensors(STATE, tensors, {"softscope_state": dumps(state, indent=None)})

    def load_state(self) -> tuple[dict, dict] | None:
        """(tensors, state) of the last commit_state, or None if there is none."""
        from safetensors import safe_open

        f = self.path / STATE
        if not f.exists():
            return None
        try:
            with safe_open(str(f), "pt") as st:
                meta = st.metadata() or {}
                tensors = {k: st.get_tensor(k) for k in st.keys()}
        except Exception as e:  # a truncated or foreign file
            raise SoftscopeError(f"{f} is damaged ({str(e).splitlines()[0][:80]}): delete the folder and rerun") from None
        if "softscope_state" in meta:
            return tensors, json.loads(meta["softscope_state"])
        if (self.path / "state.json").exists():  # written by an older softscope (state in a separate file)
            return tensors, read_json(self.path / "state.json")
        raise SoftscopeError(f"{f} holds no softscope state: delete the folder and rerun")

    # ---- closing -------------------------------------------------------------------------------------------
    def close(self, failed: bool = False) -> None:
        """Release the lock. A run that wrote nothing leaves no trace (a folder it created is removed)."""
        p = self.path
        if self._lock is not None:
            pristine = not self._recorded and not self.existing
            try:
                (p / OWNER).unlink(missing_ok=True)
                if pristine and self._created_lock:
                    (p / LOCK).unlink(missing_ok=True)
            except OSError:
                pass
            self._lock.release()
            self._lock = None
            if pristine and self._created_dir:
                try:
                    p.rmdir()
                except OSError:
                    pass
        elif failed and self._created_dir:
            try:
                (p / LOCK).unlink(missing_ok=True)
                p.rmdir()
            except OSError:
                pass

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(failed=exc[0] is not None)
