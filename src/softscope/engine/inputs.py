"""Reading a file the user named: one checker for every file option (exists, is a file, UTF-8, parses).

Every failure is a one-line `SoftscopeError` that names the option and the fix, so the CLI exits 2 with no
traceback and writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import SoftscopeError


def input_file(path: str | Path, what: str) -> Path:
    """The path of an existing regular file, or a one-line error saying what is wrong with it."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise SoftscopeError(f"{what} {path} is a folder, not a file: name the file itself")
    if not p.exists():
        raise SoftscopeError(f"{what} {path} does not exist: check the path")
    if not p.is_file():
        raise SoftscopeError(f"{what} {path} is not a regular file: name a file")
    return p


def read_text_file(path: str | Path, what: str) -> str:
    """The file's text (UTF-8, a BOM allowed), or a one-line error."""
    p = input_file(path, what)
    try:
        return p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise SoftscopeError(f"{what} {path} is not UTF-8 text (byte {e.start}): re-save it as UTF-8") from None
    except OSError as e:
        raise SoftscopeError(f"{what} {path} cannot be read ({e.strerror})") from None


def read_json_file(path: str | Path, what: str) -> Any:
    """The parsed JSON in the file, or a one-line error with the line and column of the first mistake."""
    text = read_text_file(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SoftscopeError(f"{what} {path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}): "
                             "fix the file") from None
