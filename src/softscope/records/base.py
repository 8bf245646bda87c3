"""The record mechanism: a dataclass per row kind and per summary, its file, its JSON Schema, tolerant reading.

A writer hands its values through `Record.of(values)` (an undeclared key is an error, so nothing is written that
the declaration does not name) and a reader gets typed objects from `engine.runs.read_records(path)` (unknown keys
ignored, missing ones at their defaults, keys an older softscope wrote mapped by `ALIASES`), so no reader knows a
key by string.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union

R = TypeVar("R", bound="Record")

CI = "95% interval [low, high]"  # how field docs name an interval
REGISTRY: dict[str, list[type["Record"]]] = {}  # file name → the record types written under it (most specific first)


class RecordError(ValueError):
    """A writer's values do not match their declared record (a bug in the writer, never user input)."""


def doc(text: str, default: Any = None, *, unit: str = "", optional: bool = False, factory: Any = None) -> Any:
    """A record field with its meaning (and unit) for the docs and the schema. `optional`: left out of the file
    when None (a key only some runs write)."""
    md = {"doc": text, "unit": unit, "optional": optional}
    if factory is not None:
        return field(default_factory=factory, metadata=md)
    return field(default=default, metadata=md)


@dataclass
class Record:
    """Base of every declared record. Subclasses set FILES (the file names they are written to), ROWS (one object
    per JSONL line rather than one JSON object) and may set ALIASES (old key → field) and EXTRA (a dict field whose
    items are written flat beside the declared keys, e.g. a training row's named loss terms)."""

    FILES: ClassVar[tuple[str, ...]] = ()
    ROWS: ClassVar[bool] = False
    ALIASES: ClassVar[dict[str, str]] = {}
    EXTRA: ClassVar[str] = ""
    KEYS: ClassVar[tuple[str, ...]] = ()  # keys that tell this type from another written under the same name
    ITEMS: ClassVar[str] = ""  # a summary's list field holding one entry per item (a sweep's runs)
    PLOT: ClassVar[tuple[tuple[str, ...], ...]] = ()  # (x fields, y fields, label fields) a page may plot rows by

    # ---- writing ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The record as written: declared fields in order (optional ones only when set), nested records as dicts."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == self.EXTRA:
                continue
            if v is None and f.metadata.get("optional"):
                continue
            out[f.name] = _plain(v)
        if self.EXTRA:
            out.update(_plain(getattr(self, self.EXTRA) or {}))
        return out

    @classmethod
    def of(cls, values: dict) -> dict:
        """`values` checked against the declaration and returned in the declared shape, ready to write."""
        return cls.from_dict(values, strict=True).to_dict()

    # ---- reading ---------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls: type[R], d: Any, strict: bool = False) -> R:
        """The record from a parsed JSON object. Tolerant by default (unknown keys ignored, missing ones at their
        defaults, ALIASES followed); `strict` refuses undeclared keys (what a writer wants)."""
        if isinstance(d, cls):
            return d
        if not isinstance(d, dict):
            if strict:
                raise RecordError(f"{cls.__name__}: expected an object, got {type(d).__name__}")
            d = {}
        hints = _hints(cls)
        names = cls.__dataclass_fields__
        kw, extra = {}, {}
        for k, v in d.items():
            name = k if k in names else cls.ALIASES.get(k)
            if name is None or name == cls.EXTRA:
                if cls.EXTRA:
                    extra[k] = v
                elif strict:
                    raise RecordError(f"{cls.__name__}: undeclared key {k!r} (declare it in softscope.records)")
                continue
            if name in kw and k not in names:
                continue  # the current key wins over an old alias
            kw[name] = _convert(hints[name], v, strict)
        if cls.EXTRA:
            kw[cls.EXTRA] = extra
        rec = cls(**kw)
        rec.__dict__["_read_keys"] = set(kw)  # what the file held: shown() leaves out the rest
        return rec

    def shown(self) -> dict:
        """The record as a page shows it: to_dict() without the declared fields a (partial or older) file lacked."""
        keys = self.__dict__.get("_read_keys")
        d = self.to_dict()
        return d if keys is None else {k: v for k, v in d.items() if k in keys or (self.EXTRA and k not in
                                                                                   self.__dataclass_fields__)}

    @classmethod
    def file(cls) -> str:
        """The file name this record is written to (its first, where it has several)."""
        return cls.FILES[0]

    def items(self) -> list:
        """A summary's per-item entries (ITEMS), [] where it declares none."""
        v = getattr(self, self.ITEMS, None) if self.ITEMS else None
        return v if isinstance(v, list) else []

    def value(self, name: str) -> Any:
        """A declared field by name (what a table or plot column names); None for a name it does not declare."""
        return getattr(self, name, None) if name in self.__dataclass_fields__ else None

    def headline(self) -> tuple[str | None, str | None, float | None]:
        """(task, model, headline accuracy) of a summary, for a runs list: its final, test or plain accuracy, else
        its last checkpoint's; None where it has none."""
        d = self.__dict__
        acc = next((d[k] for k in ("final_accuracy", "test_accuracy", "accuracy") if d.get(k) is not None), None)
        cks = d.get("checkpoints")
        if acc is None and isinstance(cks, list) and cks and isinstance(cks[-1], Record):
            acc = cks[-1].__dict__.get("accuracy")
        text = [v if isinstance(v, str) else None for v in (d.get("task"), d.get("model"))]
        return text[0], text[1], acc

    @classmethod
    def field_docs(cls) -> list[tuple[str, str, str, str, bool]]:
        """(name, type, unit, meaning, optional) of every field, in order: the docs table."""
        hints = _hints(cls)
        return [(f.name, type_name(hints[f.name]), f.metadata.get("unit", ""), f.metadata.get("doc", ""),
                 bool(f.metadata.get("optional"))) for f in fields(cls)]


def declare(cls: type[R]) -> type[R]:
    """Register a record type under each of its FILES (class decorator); checks every field is documented."""
    for f in fields(cls):
        if not f.metadata.get("doc"):
            raise TypeError(f"{cls.__name__}.{f.name} has no doc: declare it with records.doc(...)")
    for name in cls.FILES:
        REGISTRY.setdefault(name, []).append(cls)
    return cls


def all_records() -> list[type[Record]]:
    """Every declared record type (registered ones and the nested types they use), in declaration order."""
    seen: dict[type, None] = {}

    def visit(t: Any) -> None:
        if isinstance(t, type) and issubclass(t, Record):
            if t in seen:
                return
            seen[t] = None
            for h in _hints(t).values():
                visit(h)
        for a in typing.get_args(t):
            visit(a)

    for types_ in REGISTRY.values():
        for t in types_:
            visit(t)
    return list(seen)


def record_type(name: str, obj: Any = None) -> type[Record] | None:
    """The record type of a file called `name` (a path's name); where two share a name (a sub-run's summary and
    its sweep's), the first whose required keys `obj` holds."""
    cands = REGISTRY.get(Path(name).name, [])
    if len(cands) > 1 and isinstance(obj, dict):
        for c in cands:
            if all(k in obj for k in c.KEYS):
                return c
    return cands[0] if cands else None


# ---- JSON Schema ---------------------------------------------------------------------------------------------
def json_schema(cls: type[Record]) -> dict:
    """A JSON Schema (draft 2020-12) of one record type, nested record types under $defs."""
    defs: dict[str, dict] = {}
    top = _object_schema(cls, defs)
    out = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"softscope/{cls.__name__}.json",
           "title": cls.__name__, "description": _first_line(cls.__doc__), **top}
    if cls.FILES:
        out["x-files"] = list(cls.FILES)
        out["x-rows"] = cls.ROWS
    defs.pop(cls.__name__, None)
    if defs:
        out["$defs"] = dict(sorted(defs.items()))
    return out


def _object_schema(cls: type[Record], defs: dict) -> dict:
    hints = _hints(cls)
    props, required = {}, []
    for f in fields(cls):
        if f.name == cls.EXTRA:
            continue
        s = _type_schema(hints[f.name], defs)
        text = f.metadata.get("doc", "")
        unit = f.metadata.get("unit", "")
        s["description"] = text + (f" [{unit}]" if unit else "")
        props[f.name] = s
        if not f.metadata.get("optional"):
            required.append(f.name)
    out = {"type": "object", "properties": props, "required": required}
    if cls.EXTRA:
        out["additionalProperties"] = _type_schema(typing.get_args(hints[cls.EXTRA])[1], defs)
    return out


def _type_schema(t: Any, defs: dict) -> dict:
    origin, args = typing.get_origin(t), typing.get_args(t)
    if t is Any:
        return {}
    if t is type(None):
        return {"type": "null"}
    if isinstance(t, type) and issubclass(t, Record):
        if t.__name__ not in defs:
            defs[t.__name__] = {}  # placeholder: a record that nests itself terminates
            defs[t.__name__] = {"description": _first_line(t.__doc__), **_object_schema(t, defs)}
        return {"$ref": f"#/$defs/{t.__name__}"}
    if origin in (Union, types.UnionType):
        return {"anyOf": [_type_schema(a, defs) for a in args]}
    if origin is list or origin is tuple:
        return {"type": "array", "items": _type_schema(args[0], defs)} if args else {"type": "array"}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1], defs)}
    simple = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}
    if t in simple:
        return {"type": simple[t]}
    raise TypeError(f"no JSON Schema for {t!r}")


def type_schema(t: Any) -> dict:
    """The JSON Schema of one Python type as records and configs use them (nested records under $defs of their own)."""
    defs: dict[str, dict] = {}
    out = _type_schema(t, defs)
    return {**out, "$defs": defs} if defs else out


def type_name(t: Any) -> str:
    """A field's type as the docs show it (str | None, list[int], CheckpointRow...)."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if t is Any:
        return "any"
    if t is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, dict, tuple):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    return getattr(t, "__name__", str(t))


# ---- helpers ---------------------------------------------------------------------------------------------
def _first_line(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _plain(v: Any) -> Any:
    if isinstance(v, Record):
        return v.to_dict()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _convert(t: Any, v: Any, strict: bool) -> Any:
    """A JSON value into the declared type's shape: nested records built, everything else kept as read."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if isinstance(t, type) and issubclass(t, Record):
        return t.from_dict(v, strict) if isinstance(v, dict) else (None if not strict else _bad(t, v))
    if origin in (Union, types.UnionType):
        recs = [a for a in args if isinstance(a, type) and issubclass(a, Record)]
        if recs and isinstance(v, dict):
            return recs[0].from_dict(v, strict)
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and v is not None:
            return _convert(inner[0], v, strict)
        return v
    if origin is list and args and isinstance(v, list):
        return [_convert(args[0], x, strict) for x in v]
    if origin is dict and len(args) == 2 and isinstance(v, dict):
        return {k: _convert(args[1], x, strict) for k, x in v.items()}
    return v


def _bad(t: type, v: Any):
    raise RecordError(f"{t.__name__}: expected an object, got {type(v).__name__}")


def dumps_schema(cls: type[Record]) -> str:
    return json.dumps(json_schema(cls), indent=2, ensure_ascii=False) + "\n"


__all__ = ["Record", "RecordError", "doc", "declare", "all_records", "record_type", "json_schema", "type_schema",
           "dumps_schema", "type_name", "REGISTRY", "CI"]
