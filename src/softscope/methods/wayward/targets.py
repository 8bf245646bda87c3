"""Target texts: read from files (JSON or one per line), chosen by a protocol, or given on the command line."""

from __future__ import annotations

import re
from pathlib import Path

from ...engine.errors import SoftscopeError
from ...engine.inputs import read_json_file, read_text_file
from ...engine.tasks import data_dir
from .config import WaywardConfig


# ---- targets ---------------------------------------------------------------------------------------------
def _targets_dir(cfg: WaywardConfig) -> Path | None:
    d = data_dir(cfg.data_dir)
    return d / "targets" if d is not None and (d / "targets").is_dir() else None


def read_targets(path: str | Path, base: Path | None = None) -> list[tuple[str, str]]:
    """(name, text) pairs from a JSON object/list or a text file (one target per line); names get the file stem."""
    p = Path(path).expanduser()
    if not p.exists() and base is not None and (base / p).exists():
        p = base / p
    if not p.exists():
        raise SoftscopeError(f"target file {path} not found: pass a path or a name in {base or '<data-dir>/targets'}")
    if p.suffix == ".json":
        data = read_json_file(p, "target file")
        if not isinstance(data, (dict, list)):
            raise SoftscopeError(f"target file {p} must hold a JSON object {{name: text}} or a list of texts")
        items = list(data.items()) if isinstance(data, dict) else [(f"{i:03d}", t) for i, t in enumerate(data)]
    else:
        lines = read_text_file(p, "target file").splitlines()
        items = [(f"{i:03d}", line.strip()) for i, line in enumerate(lines) if line.strip()]
    return [(f"{p.stem}/{k}", str(v)) for k, v in items]


def protocol_targets(cfg: WaywardConfig, task_name: str) -> list[tuple[str, str]]:
    """The targets a preset prescribes (see PROTOCOLS), read from <data-dir>/targets/."""
    base = _targets_dir(cfg)
    if base is None:
        raise SoftscopeError("--protocol needs the targets/ folder of the shared data: pass --data-dir")
    natural = read_targets(base / "natural_prompts.json")
    if cfg.protocol in ("quick", "cpu"):  # short and long alternate, so a cut-short sweep still spans the length axis
        picked = []
        for nat, n in zip(natural[::8][:4], (4, 7, 14, 28)):
            picked += read_targets(base / f"pile_n{n}.json")[:1] + [nat]
        if cfg.protocol == "cpu":  # quick's 4 shortest for SmolLM2 (4, 8, 12, 15 tokens), shortest first
            return [picked[i] for i in (0, 2, 7, 5)]
        return picked
    key = re.sub(r"[-_ ]", "", task_name.lower())
    good = [(k, t) for k, t in read_targets(base / "good_prompts.json")
            if re.sub(r"[-_ ]", "", k.split("/", 1)[1].rsplit("_", 1)[0].lower()) == key]
    return natural + good


def load_targets(cfg: WaywardConfig, task_name: str) -> list[tuple[str, str]]:
    """Targets from --protocol, --targets files and --target texts, in that order, deduplicated by name."""
    out: list[tuple[str, str]] = []
    if cfg.protocol != "custom":
        if cfg.targets or cfg.target:
            raise SoftscopeError("--protocol picks its own targets: drop --targets/--target or use --protocol custom")
        out = protocol_targets(cfg, task_name)
    base = _targets_dir(cfg)
    for f in cfg.targets or []:
        out += read_targets(f, base)
    for i, t in enumerate(cfg.target or []):
        out.append((f"text/{i:03d}", t))
    seen, uniq = set(), []
    for name, text in out:
        if name not in seen and text.strip():
            seen.add(name)
            uniq.append((name, text))
    if not uniq:
        raise SoftscopeError("no target texts: pass --targets FILE, --target TEXT or --protocol quick")
    return uniq[: cfg.max_targets] if cfg.max_targets else uniq
