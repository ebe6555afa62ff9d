"""The typer application, consoles and options shared by every command module."""

from __future__ import annotations

import os
import sys
from pathlib import Path
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


def csv_list(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


#: ``--force`` of every command that writes: replaces only a previous output of the
#: same kind that histexpr wrote (see histexpr.atomic.guard_output), never other files.
Force = Annotated[
    bool, typer.Option("--force", help="Replace a previous output of histexpr at the same path.")
]

#: ``--interval LEVEL`` of predict and evaluate (a model calibrated by ``train --intervals``).
Interval = Annotated[
    float | None,
    typer.Option(help="Prediction interval level in (0, 1), e.g. 0.9 (train --intervals)."),
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


#: Reader options of deepTools computeMatrix input (histexpr.data.deeptools).
Marks = Annotated[
    str | None,
    typer.Option(help="deepTools matrix: sample label -> mark, LABEL=MARK[,...] (or CELL:MARK)."),
]
Cell = Annotated[
    str | None, typer.Option(help="deepTools matrix: cell type of its samples (default: label).")
]
Expression = Annotated[
    Path | None,
    typer.Option(help="deepTools matrix: RPKM table (gene_id + one column per cell type)."),
]


def reader_options(**opts) -> dict:
    """The reader options given (None: not given), for ``load_dataset(**opts)``."""
    return {k: v for k, v in opts.items() if v is not None}
