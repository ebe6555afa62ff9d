"""The ``histexpr`` command line: a thin layer over the library functions.

Every user error is printed as one line and exits with code 2; ``--debug``
shows the traceback instead. Warnings and notices of the library are one plain
line each, once (:func:`histexpr._runtime.plain_warnings`); ``--debug`` shows
Python's full warnings. Commands live in :mod:`histexpr.cli.data`
(info, convert, simulate, featurize, download), :mod:`histexpr.cli.train`
(train), :mod:`histexpr.cli.models` (evaluate, protocol, predict) and :mod:`histexpr.cli.outputs` (explain,
report, demo); importing them registers them on :data:`app`.
"""

from __future__ import annotations

import sys

import typer
import typer.exceptions
from rich.markup import escape

from histexpr._runtime import plain_warnings
from histexpr.cli import data, models, outputs, train  # noqa: F401  (registers the commands)
from histexpr.cli._app import app, err_console
from histexpr.cli.tables import per_cell_table, results_table
from histexpr.errors import HistexprError

__all__ = ["MAX_ERROR_CHARS", "app", "bounded", "main", "per_cell_table", "results_table"]


#: Longest error line printed; longer messages lose their middle.
MAX_ERROR_CHARS = 300


def bounded(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``message`` on one line of at most ``limit`` characters (the middle elided)."""
    text = " ".join(str(message).split())
    if len(text) <= limit:
        return text
    keep = limit - 5
    return f"{text[: keep - keep // 3]} ... {text[len(text) - keep // 3 :]}"


def _interrupted(args: list[str]) -> None:
    command = next((a for a in args if not a.startswith("-")), "")
    hint = "; run the same command with --resume to continue" if command == "train" else ""
    err_console.print(f"interrupted{hint}", highlight=False, soft_wrap=True)
    sys.exit(130)


def _notice_line(line: str) -> None:
    """A notice or warning as one line on stderr, never wrapped mid-word."""
    err_console.print(escape(bounded(line)), highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and exit code 2.

    Ctrl-C prints "interrupted" (with a hint to ``--resume`` for train) and exits
    with 130; error lines are at most :data:`MAX_ERROR_CHARS` characters.
    """
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    if "train" in args and "--help" in args:
        train.list_kinds_in_help(command)
    try:
        with plain_warnings(_notice_line, debug=debug):
            code = command.main(args=args, prog_name="histexpr", standalone_mode=False)
        # typer turns Ctrl-C into a *returned* 130 when not standalone: exit with it.
        if isinstance(code, int) and code != 0:
            if code == 130:
                _interrupted(args)
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        # click turns KeyboardInterrupt (and EOFError) into Abort
        _interrupted(args)
    except typer.exceptions.TyperException as exc:
        # usage errors (unknown option, bad value): click's message, exit code 2
        if hasattr(exc, "show"):
            exc.show()
        else:
            err_console.print(f"error: {bounded(exc)}")
        sys.exit(2)
    except HistexprError as exc:
        if debug:
            raise
        # One bounded line whatever the message holds (library errors can span several);
        # escaped, or rich would swallow keys such as "[marks]" as markup tags.
        message = escape(bounded(str(exc)))
        err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted(args)
