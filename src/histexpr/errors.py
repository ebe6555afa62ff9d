"""User-facing exceptions.

Every problem a user can cause (a malformed file, a wrong option) is raised as a
:class:`HistexprError` whose message is one line naming the file, the key and the
problem. The CLI prints that line and exits with code 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class HistexprError(Exception):
    """A problem with the user's input or request, reported as one line."""


class DataError(HistexprError):
    """Malformed or inconsistent input data.

    Parameters
    ----------
    problem : str
        What is wrong, e.g. ``"expected 100 bins, found 98"``.
    path : str or os.PathLike, optional
        The file that holds the problem.
    key : str, optional
        The array, column, cell type or gene inside the file.
    """

    def __init__(self, problem: str, path=None, key: str | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.key = key
        where = []
        if self.path is not None:
            where.append(self.path)
        if key is not None:
            where.append(f"[{key}]")
        prefix = " ".join(where)
        super().__init__(f"{prefix}: {problem}" if prefix else problem)


class ConfigError(HistexprError):
    """An invalid configuration value or option combination."""
