"""Which files the explorer may read: only those under the folders (or prompt files) it was started with.

A request names a file as "<root index>/<relative path>". Refused: `..` and `.` segments, absolute paths, back
slashes and NUL, percent-encoded dots, slashes, back slashes or percent signs in the raw URL (a second decoding
must not reveal a traversal), and anything whose real path (symlinks followed) lies outside its root.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

ENCODED = re.compile(r"%(2e|2f|5c|25|00)", re.I)


class PathRefused(ValueError):
    """A path a client sent that the explorer will not open (the message says why)."""


@dataclass(frozen=True)
class Roots:
    """The folders and prompt files given on the command line, by index."""

    paths: tuple[Path, ...]

    @classmethod
    def of(cls, paths) -> "Roots":
        out = []
        for p in paths:
            p = Path(p).expanduser()
            if not p.exists():
                raise FileNotFoundError(f"{p} does not exist: pass run folders or prompt files")
            out.append(p.resolve())
        return cls(tuple(out))

    def resolve(self, ref: str, raw: str | None = None) -> Path:
        """The real path of "<index>/<relative path>" (just "<index>" for the root itself), or PathRefused."""
        if raw is not None and ENCODED.search(raw):
            raise PathRefused("percent-encoded '.', '/', '\\', '%' or NUL in the path are refused")
        if not isinstance(ref, str) or not ref or len(ref) > 1024:
            raise PathRefused("give a path as <root>/<relative path>")
        if "\\" in ref or "\x00" in ref or ENCODED.search(ref):
            raise PathRefused("back slashes, NUL and encoded characters are refused in paths")
        if ref.startswith("/") or re.match(r"^[A-Za-z]:", ref):
            raise PathRefused("absolute paths are refused: give <root>/<relative path>")
        head, _, rel = ref.partition("/")
        if not head.isdigit() or int(head) >= len(self.paths):
            raise PathRefused(f"unknown root {head!r}: use 0..{len(self.paths) - 1}")
        parts = [s for s in rel.split("/") if s != ""] if rel else []
        if any(s in (".", "..") for s in parts):
            raise PathRefused("'.' and '..' segments are refused")
        root = self.paths[int(head)]
        real = Path(os.path.realpath(root.joinpath(*parts)))
        if real != root and root not in real.parents:
            raise PathRefused("the path leads outside the served folders (symlink?)")
        if not real.exists():
            raise FileNotFoundError(f"{ref} does not exist")
        return real

    def ref(self, path: Path) -> str:
        """The "<index>/<relative path>" of a real path under one of the roots (the inverse of resolve)."""
        path = Path(os.path.realpath(path))
        for i, root in enumerate(self.paths):
            if path == root:
                return str(i)
            if root in path.parents:
                return f"{i}/{path.relative_to(root).as_posix()}"
        raise PathRefused(f"{path} is not under a served folder")
