"""Click options generated from the config dataclasses, so the CLI and the Python API cannot drift apart."""

from __future__ import annotations

import dataclasses
import math
import types
import typing

import click

from ..engine.errors import SoftscopeError
from ..engine.runs import dumps, saved_config


# ---- options from dataclasses ----------------------------------------------------------------------------
def _click_type(tp):
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and args:
        return _click_type(args[0])
    if tp in (int, "int"):
        return int
    if tp in (float, "float"):
        return float
    return str


def _parse_list(value):
    if value is None or isinstance(value, list):
        return value
    return [v.strip() for v in str(value).split(",") if v.strip()]


def config_options(cls, exclude: tuple[str, ...] = ()):
    """Decorator: one click option per dataclass field (help from the field's metadata)."""
    hints = typing.get_type_hints(cls)

    def deco(f):
        for fld in reversed(dataclasses.fields(cls)):
            if fld.name in exclude:
                continue
            tp = hints[fld.name]
            help_ = fld.metadata.get("help", "")
            default = fld.default if fld.default is not dataclasses.MISSING else fld.default_factory()
            flag = "--" + fld.name.replace("_", "-")
            if tp is bool:
                f = click.option(f"{flag}/--no-{fld.name.replace('_', '-')}", fld.name, default=default,
                                 show_default=True, help=help_)(f)
            elif "list" in str(tp):
                f = click.option(flag, fld.name, default=",".join(map(str, default)) if default else None,
                                 show_default=True, help=help_ + " (comma-separated)")(f)
            else:
                f = click.option(flag, fld.name, type=_click_type(tp), default=default, show_default=True,
                                 help=help_)(f)
        return f

    return deco


def _numbers(option: str, values: list[str] | None) -> list[float] | None:
    """Comma-separated numbers of a list[float] option; a word among them is a one-line error."""
    try:
        return None if values is None else [float(v) for v in values]
    except ValueError:
        raise SoftscopeError(f"{option} {','.join(values)}: give numbers separated by commas, e.g. 0,0.1") from None


def fmt_num(x, fmt: str = "5.2f") -> str:
    """A number for a table column, or '  n/a' when it is missing or NaN."""
    return "  n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def build_config(cls, kwargs: dict):
    """The config from parsed options (lists split on commas); validation errors are SoftscopeErrors."""
    hints = typing.get_type_hints(cls)
    kw = {}
    for fld in dataclasses.fields(cls):
        if fld.name in kwargs:
            v = kwargs[fld.name]
            if "list" in str(hints[fld.name]):
                v = _parse_list(v)
                if "float" in str(hints[fld.name]):
                    v = _numbers("--" + fld.name.replace("_", "-"), v)
            kw[fld.name] = v
    return cls(**kw)


def resumed(cls, out, cfg):
    """The config a --resume continues: the run's recorded one, with the options given on this command line on
    top (so a changed setting is reported by the run's fingerprint check instead of silently ignored)."""
    saved = saved_config(out)
    if not saved:
        return cfg
    ctx = click.get_current_context()
    given = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)
             if (src := ctx.get_parameter_source(f.name)) is not None and src.name == "COMMANDLINE"}
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{**{k: v for k, v in saved.items() if k in names}, **given})


def echo_json(obj) -> None:
    click.echo(dumps(obj))
