"""The typer application, consoles and options shared by every command module."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
import typer.exceptions
from rich.console import Console

app = typer.Typer(
    help="Predict gene expression from histone-modification signal around the TSS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
#: Width of a console that is not a terminal (a log file, a pipe): wide enough that
#: no table cell or line is wrapped, so no number is split across lines.
LOG_WIDTH = 1000


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # a terminal (or an explicit COLUMNS) sets the width; a log has none to fit
    tty = stream.isatty() or "COLUMNS" in os.environ
    return Console(stderr=stderr, width=None if tty else LOG_WIDTH)


console = _console()
err_console = _console(stderr=True)
_STATE = {"debug": False, "quiet": False}


def _csv_list(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


#: ``--force`` of every command that writes: replaces only a previous output of the
#: same kind that histexpr wrote (see histexpr.atomic.guard_output), never other files.
Force = Annotated[
    bool, typer.Option("--force", help="Replace a previous output of histexpr at the same path.")
]


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and Python's full warnings.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress lines or bars, only results.")
    ] = False,
):
    _STATE["debug"] = debug
    _STATE["quiet"] = quiet


def plain(line: str) -> None:
    """Print a log line as it is: no markup (``[step 2/7, ...]`` is text), never wrapped."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def quiet() -> bool:
    """Whether ``--quiet`` was given (no progress lines or bars)."""
    return _STATE["quiet"]
