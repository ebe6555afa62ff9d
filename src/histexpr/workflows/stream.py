"""The streamed model reader shared by predict and evaluate: a data file, block by block.

HDF5 inputs are read in blocks sized by a memory budget (:func:`rows_for_budget`), so
files larger than memory work; every block is validated before it reaches the model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from histexpr.data.convert import load_dataset
from histexpr.data.validate import one_line, validate_dataset
from histexpr.errors import HistexprError
from histexpr.estimators import kind_of, load_estimator
from histexpr.estimators.bundle import check_input, read_header

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "load_model",
    "parse_size",
    "refuse_input_as_output",
    "rows_for_budget",
    "stream_predictions",
]

#: Default memory budget of predict / evaluate for the input block.
DEFAULT_MEMORY_BUDGET = 512 * 2**20
#: A block in memory costs its float32 X plus model working memory (log1p copy,
#: normalised tensor, features); budget rows on about 4 x the raw size.
_BLOCK_OVERHEAD = 4


def parse_size(text: str | int) -> int:
    """Bytes from ``"512MB"``, ``"2GiB"``, ``"100k"`` or a plain number."""
    t = str(text).strip().upper().replace("IB", "B")
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    try:
        if t.endswith("B"):
            t = t[:-1]
        if t and t[-1] in units:
            size = int(float(t[:-1]) * units[t[-1]])
        else:
            size = int(float(t))
    except (ValueError, OverflowError):
        raise HistexprError(f"cannot read memory size {text!r} (e.g. 512MB, 2GB)") from None
    if size <= 0:
        raise HistexprError(f"memory size must be positive (e.g. 512MB, 2GB), got {text}")
    return size


def rows_for_budget(budget_bytes: int, n_marks: int, n_bins: int) -> int:
    """Examples per block so that one block stays within ``budget_bytes``."""
    per_row = n_marks * n_bins * 4 * _BLOCK_OVERHEAD
    return max(1, int(budget_bytes) // per_row)


def load_model(model_dir):
    """Load a saved model; a damaged directory is a one-line error, not a traceback."""
    import json
    import zipfile

    errors: tuple[type[BaseException], ...] = (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        EOFError,
        zipfile.BadZipFile,
        json.JSONDecodeError,
    )
    try:
        from safetensors import SafetensorError

        errors += (SafetensorError,)
    except ImportError:  # pragma: no cover - safetensors is a dependency
        pass
    try:
        from lightgbm.basic import LightGBMError

        errors += (LightGBMError,)
    except ImportError:  # pragma: no cover - lightgbm is optional
        pass
    try:
        return load_estimator(model_dir)
    except HistexprError:
        raise
    except errors as exc:
        # EOFError must not escape: click would report it as "aborted".
        raise HistexprError(f"{model_dir}: cannot load the model ({one_line(exc)})") from None


def stream_predictions(
    model_dir,
    data_path,
    memory_budget,
    need_target: bool,
    on_open: Callable[[list[str]], None] | None = None,
    progress: bool = False,
    desc: str = "predicting",
    est=None,
    split: str | None = None,
    target: str = "auto",
    reader_opts: dict | None = None,
    keep_target: bool = False,
):
    """Yield (block, prediction) over a data file, block by block.

    ``target`` ("auto", "yes", "no") is how a course npz's expression column is
    read when targets are needed (prediction never reads it).

    HDF5 files are read in blocks sized by ``memory_budget``; other formats are
    loaded whole (they have no lazy reader). Every block is validated before it
    reaches the model, so a bad count is reported, never silently predicted.

    Parameters
    ----------
    on_open : callable, optional
        Called with the data's cell types once, before the first prediction (to
        check options against them before any work is done).
    progress : bool
        Show the progress bar over examples (:func:`histexpr._runtime.progress`).
    est : estimator, optional
        The model of ``model_dir`` when the caller has loaded it already.
    split : str, optional
        Only the examples of this published split (``HistoneDataset.split``, e.g.
        "test"); an error when the data has no split field or no such split.
    reader_opts : dict, optional
        Reader options of a non-HDF5 input (e.g. a deepTools matrix's ``marks``).
    keep_target : bool
        Without ``need_target``: keep the expression values the data has (to report
        them beside the predictions); data whose targets cannot be read are
        predicted without them.
    """
    from histexpr._runtime import progress as progress_bar
    from histexpr.data.hdf5 import is_h5, open_h5

    est = load_model(model_dir) if est is None else est
    header = read_header(model_dir)
    if is_h5(data_path):
        if reader_opts:
            raise HistexprError(f"{data_path}: option(s) {', '.join(reader_opts)} do not apply")
        with open_h5(data_path) as h:
            _check_opened(header, h, data_path, need_target)
            if on_open is not None:
                on_open(list(h.cells))
            rows = rows_for_budget(parse_size(memory_budget), len(h.marks), h.n_bins)
            names: set[str] = set()

            def blocks():
                for block in h.iter_batches(rows):
                    block = block if need_target or keep_target else block.without_target()
                    validate_dataset(block, data_path, marks=None, n_bins=None, unique=False)
                    n_read = len(block)
                    if split is not None:
                        block = _in_split(block, split, names, data_path)
                    yield block, n_read

            # A model that estimates something per cell type from all its genes (the atlas
            # kinds' similarity to the reference cells, a network's depth per cell type
            # with depth_norm="cell") sees the whole input first, so its predictions do
            # not depend on the memory budget (issue #24).
            optim = (header.config.get("train") or {}).get("optim") or {}
            prepare = kind_of(header.kind).needs_atlas or optim.get("depth_norm") == "cell"
            if prepare:
                est.prepare_cells(b for b, _ in blocks() if len(b))
            try:
                with progress_bar(len(h), desc, unit="ex", enabled=progress) as bar:
                    kept = 0
                    for block, n_read in blocks():
                        kept += len(block)
                        if len(block):
                            yield block, est.predict(block)
                        bar.update(n_read)
            finally:
                if prepare:
                    est.prepare_cells(None)
            if split is not None and kept == 0:
                _in_split(None, split, names, data_path)
        return
    # predict never uses the expression column: NaN there must not stop it (issue 12).
    opts = reader_opts or {}
    data = None
    if keep_target and not need_target:
        try:
            data = load_dataset(data_path, target="auto", **opts)
        except HistexprError:
            data = None  # e.g. NaN in an expression column: predict without it
    if data is None:
        data = load_dataset(data_path, target=target if need_target else "no", **opts)
    _check_opened(header, data, data_path, need_target)
    if split is not None:
        names = set()
        data = _in_split(data, split, names, data_path)
        if len(data) == 0:
            _in_split(None, split, names, data_path)
    if on_open is not None:
        on_open(data.cells)
    with progress_bar(len(data), desc, unit="ex", enabled=progress) as bar:
        yield data, est.predict(data)
        bar.update(len(data))


def _check_opened(header, data, data_path, need_target: bool) -> None:
    """The checks of an opened input, HDF5 file or data set alike: the model's input
    contract, targets where they are scored, and at least one example."""
    check_input(header, data, source=str(data_path), targets=need_target)
    if need_target and not data.has_target:
        raise HistexprError(f"{data_path}: no expression values to evaluate against")
    if len(data) == 0:
        raise HistexprError(f"{data_path}: no examples")


def _in_split(block, split: str, names: set[str], data_path):
    """The examples of ``block`` in ``split``; ``block=None``: the split matched nothing."""
    if block is not None and block.split is None:
        raise HistexprError(
            f"{data_path}: the data has no split field, so --split {split} cannot be used "
            "(DeepChrome folders and files converted from them carry one)"
        )
    if block is None:
        have = ", ".join(sorted(names)) or "none"
        raise HistexprError(f"{data_path}: no examples in split {split!r} (splits: {have})")
    names.update(np.unique(block.split).tolist())
    return block.subset(block.split == split)


def refuse_input_as_output(data_path, out) -> None:
    """An output must never replace the input it is computed from."""
    src, dst = Path(data_path), Path(out)
    if dst.is_dir():
        raise HistexprError(f"{out}: is a directory; give a file name for the output")
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise HistexprError(f"{out}: is the input data; choose another output file")
