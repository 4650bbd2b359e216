"""`hsl`: the command line. A table of names to functions, whose signatures are the options;
the library does the work.

Every stage reads and writes JSONL files, so each can run alone on files from anywhere.
Bad input stops with one line naming the file, line and field.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer

from hsl_tools.cli.files import export_cmd, import_cmd, merge
from hsl_tools.cli.options import print_error
from hsl_tools.cli.relabeling import mask, relabel, relabel_check
from hsl_tools.cli.rollouts import collect, evaluate, init_model, serve, show
from hsl_tools.cli.training import grid, iterate, report_cmd, train_cmd
from hsl_tools.envs.base import EnvError
from hsl_tools.records import RecordError
from hsl_tools.run_lock import FolderInUse

COMMANDS: dict[str, Callable[..., Any]] = {
    "init-model": init_model,
    "collect": collect,
    "eval": evaluate,
    "relabel": relabel,
    "mask": mask,
    "relabel-check": relabel_check,
    "train": train_cmd,
    "iterate": iterate,
    "grid": grid,
    "report": report_cmd,
    "import": import_cmd,
    "merge": merge,
    "export": export_cmd,
    "show": show,
    "serve-env": serve,
}

# plain help (no rich markup: "[default: …]" in a help text stays as written)
app = typer.Typer(help=(
    "Hindsight Supervised Learning for LLM agents: roll out, relabel what the agent achieved, "
    "mask what did not matter, train; each stage reads and writes JSONL. "
    "Start with `just demo`; `hsl COMMAND --help` explains a stage."),
    no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
    add_completion=False)
for _name, _command in COMMANDS.items():
    app.command(_name)(_command)


def main() -> None:
    """Console entry point: expected failures (bad input, unusable output, missing data, a
    server away) print one line, not a traceback."""
    try:
        app()
    except (RecordError, ValueError, OSError, EnvError, FolderInUse) as e:
        print_error(e)
        sys.exit(2)
