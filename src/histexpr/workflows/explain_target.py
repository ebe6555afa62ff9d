"""Which model ``histexpr explain`` explains, and where its explanation goes.

A run directory holds several models: one is chosen by its declaration
(``kind_of(kind).explainable``, a network first); a model directory is its own target.
The explanation goes to the run's ``explain/`` or beside the model (``MODEL_DIR.explain``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from histexpr import runs
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import HistexprError
from histexpr.estimators import KIND_TABLE, kind_names, kind_of
from histexpr.estimators.bundle import HEADER, read_header

__all__ = [
    "DEFAULT_CELLS",
    "ExplainTarget",
    "check_out_dir",
    "choose_model",
    "default_cells",
    "explain_candidates",
    "resolve_target",
]

#: Cell types explained by default for a model directory (the first of the data).
DEFAULT_CELLS = 4


@dataclass(frozen=True)
class ExplainTarget:
    """What :func:`resolve_target` found: the model to explain and where its explanation goes."""

    path: Path
    model_dir: Path
    name: str
    kind: str
    default_out: Path
    run: runs.Run | None
    notes: tuple[str, ...] = ()


def _no_gradients(where, kind: str) -> HistexprError:
    return HistexprError(
        f"{where}: a {kind} baseline has no gradients to explain; "
        f"explain needs a model of {', '.join(kind_names(explainable=True))}"
    )


def _explain_order(kind: str) -> tuple[bool, int]:
    """Networks first (the gradients of the histone signal alone), then table order."""
    return kind_of(kind).family != "network", list(KIND_TABLE).index(kind)


def explain_candidates(found: dict[str, str]) -> list[str]:
    """The names of ``found`` (name -> kind) explained without a pair, the first chosen.

    Explainable expression kinds (``kind_of(kind).explainable``): networks first (the
    gradients of the histone signal alone), then in the order of the table of kinds.
    """
    usable = [n for n, k in found.items() if kind_of(k).explainable and not kind_of(k).pairs]
    return sorted(usable, key=lambda name: _explain_order(found[name]))


def choose_model(run: runs.Run, model_kind: str | None = None) -> tuple[str, list[str]]:
    """The model of a run to explain, and notes on the ones skipped.

    Without ``model_kind``: the first explainable expression model
    (``kind_of(kind).explainable``), a network first, then in the order of the table of
    kinds; the others (baselines have no gradients) are skipped.
    """
    dirs = run.model_dirs()
    if not dirs:
        raise HistexprError(f"{run.dir / runs.MODELS}: no saved models in this run directory")
    found = {name: read_header(d).kind for name, d in dirs.items()}
    if model_kind is not None:
        if model_kind not in found:
            raise HistexprError(
                f"{run.dir / runs.MODELS}: no model {model_kind!r}; found {', '.join(found)}"
            )
        if not kind_of(found[model_kind]).explainable:
            raise _no_gradients(dirs[model_kind], found[model_kind])
        return model_kind, []
    usable = explain_candidates(found)
    if not usable:
        raise HistexprError(
            f"{run.dir / runs.MODELS}: only baselines ({', '.join(found)}); "
            "explain needs a neural model"
        )
    skipped = [name for name in found if name != usable[0]]
    notes = [f"explained {usable[0]}; not explained: {', '.join(skipped)}"] if skipped else []
    return usable[0], notes


def resolve_target(path, model_kind: str | None = None) -> ExplainTarget:
    """A run directory or a model directory -> the model to explain and its default folder."""
    path = Path(path)
    if runs.is_run_dir(path):
        run = runs.read_run(path)
        name, notes = choose_model(run, model_kind)
        model_dir = run.model_dirs()[name]
        kind = read_header(model_dir).kind
        return ExplainTarget(path, model_dir, name, kind, run.explain_dir, run, tuple(notes))
    if (path / HEADER).is_file():
        kind = read_header(path).kind
        if model_kind is not None and model_kind not in (kind, path.name):
            raise HistexprError(f"{path}: holds a {kind} model, not {model_kind!r}")
        if not kind_of(kind).explainable:
            raise _no_gradients(path, kind)
        return ExplainTarget(path, path, path.name, kind, runs.model_explain_dir(path), None)
    raise HistexprError(
        f"{path}: neither a run directory (no {runs.RUN_JSON}) nor a model directory (no {HEADER})"
    )


def check_out_dir(out_dir: Path, model_dir: Path) -> None:
    """Refuse to replace a folder that is not this model's explanation (one line)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise HistexprError(f"{out_dir}: exists and is not a folder; choose another -o")
    if runs.has_explanation(out_dir):
        owner = runs.read_explain_info(out_dir).get("model_dir")
        # folders written before explanations recorded their model belong to their run
        if owner is not None and Path(owner) != model_dir.resolve():
            raise HistexprError(
                f"{out_dir}: holds the explanation of another model ({owner}); choose another -o"
            )
        return
    if any(out_dir.iterdir()):
        raise HistexprError(
            f"{out_dir}: exists and is not an explanation folder; choose another -o"
        )


def default_cells(target: ExplainTarget, data: HistoneDataset) -> tuple[list[str], list[str]]:
    """Cell types to explain when none are asked for, and a note on the choice.

    A run: one seen and one unseen cell type (as the seed's Fig. 4 compares). A model
    directory: the first :data:`DEFAULT_CELLS` cell types of the data.
    """
    available = [str(c) for c in data.cells]
    if target.run is not None:
        seen = [c for c in target.run.train_cells if c in available][:1]
        unseen = [c for c in target.run.unseen_cells if c in available][:1]
        if seen or unseen:
            return seen + unseen, []
    cells = available[:DEFAULT_CELLS]
    notes = []
    if len(available) > len(cells):
        notes.append(
            f"explained {len(cells)} of {len(available)} cell types; choose others with --cells"
        )
    return cells, notes
