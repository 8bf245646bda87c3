"""`softscope serve`: the live explorer over run folders and prompt files."""

from __future__ import annotations

import click

from ..engine.errors import SoftscopeError
from ..serve import ServeConfig, serve
from .options import build_config, config_options


@click.command("serve")
@click.argument("paths", nargs=-1, type=click.Path())
@config_options(ServeConfig)
def serve_cmd(paths, **kw):
    """Explore run folders in the browser and describe soft prompts live (InSPEcT, streamed token by token).

    PATHS are run folders (every run below them is listed) and prompt files (default: ./runs). The server binds
    127.0.0.1; any other --host needs the access token it prints (as Jupyter does). Requests from several tabs
    are batched into one engine batch.
    """
    cfg = build_config(ServeConfig, kw)
    paths = paths or ("runs",)
    try:
        serve(paths, cfg, announce=click.echo)
    except FileNotFoundError as e:
        raise SoftscopeError(str(e)) from None


COMMANDS = [serve_cmd]
