"""The `softscope` command line: one subcommand per verb — parse → config dataclass → API call → print.

Options are generated from the config dataclasses, so the CLI and the Python API cannot drift apart.
User-fixable errors print one line and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import click

from ..engine.errors import SoftscopeError
from . import bias, core, describe, interpret, pez, report, serve, tradeoff, wayward


# ---- commands ---------------------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="softscope")
def cli():
    """softscope: train soft prompts on any Hugging Face causal LM and read what they mean.

    \b
    Typical session:
      softscope train --task sst2 --tokens 7 --steps 300 --out runs/sst2
      softscope project runs/sst2/prompt.safetensors --metric cos
      softscope eval runs/sst2/prompt.safetensors --task sst2
    """


for _module in (core, describe, wayward, pez, interpret, tradeoff, bias, report, serve):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, standalone_mode=False)
    except SoftscopeError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted: finished checkpoints are kept; rerun with --resume", err=True)
        sys.exit(130)

