"""The input contract of a saved model and the one check of data against it.

A model records what it was trained on (:class:`InputContract`: marks in order,
bins, bin size, where the window around the TSS starts, target transform,
training cell types) in its ``model.json`` (:mod:`histexpr.estimators.bundle`).
:func:`check_input` is the one check of data against it, used by predict,
evaluate and explain and by every estimator's ``predict``; :func:`check_target`
is its target part (evaluation), called again once the targets are read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from histexpr.data.dataset import TARGET_PASSTHROUGH
from histexpr.errors import HistexprError

#: Bin width assumed for data that does not record one.
DEFAULT_BIN_SIZE = 100


@dataclass(frozen=True)
class InputContract:
    """What a model was trained on and accepts: checked by :func:`check_input`.

    Attributes
    ----------
    marks : tuple of str
        Mark names in the order of axis 1 of ``X``.
    n_bins : int
    bin_size : int or None
        Bin width in bp (None: unknown, a version-1 bundle).
    target : str
        Target transform of the training data, e.g. "log2(RPKM+1)" ("": unknown).
    cells : tuple of str
        Training cell types.
    upstream : int or None
        Where the window starts, in bp upstream of the TSS (None: unknown, data that
        does not record its window); with ``n_bins`` and ``bin_size`` it fixes the
        window, e.g. 4000 for +/-4 kb in 80 bins of 100 bp.
    """

    marks: tuple[str, ...]
    n_bins: int
    bin_size: int | None = DEFAULT_BIN_SIZE
    target: str = ""
    cells: tuple[str, ...] = ()
    upstream: int | None = None

    @classmethod
    def of(cls, data) -> InputContract:
        """The contract of a training dataset (``bin_size`` from ``data.meta``)."""
        return cls(
            tuple(data.marks),
            int(data.n_bins),
            data_bin_size(data),
            str(getattr(data, "target", "") or ""),
            tuple(str(c) for c in getattr(data, "cells", ())),
            window_upstream(data),
        )


def data_bin_size(data) -> int:
    """Bin size in bp of ``data``: its ``bin_size`` attribute, else ``meta["bin_size"]``,
    else :data:`DEFAULT_BIN_SIZE` (data read before the size was recorded)."""
    value = getattr(data, "bin_size", None)
    if value is None:
        value = (getattr(data, "meta", None) or {}).get("bin_size", DEFAULT_BIN_SIZE)
    return int(value)


def window_upstream(data) -> int | None:
    """Where ``data``'s window starts, bp upstream of the TSS (``meta["window"]``), or None."""
    window = (getattr(data, "meta", None) or {}).get("window")
    if isinstance(window, dict) and window.get("upstream") is not None:
        try:
            return int(window["upstream"])
        except (TypeError, ValueError):
            return None
    return None


def describe_window(upstream: int | None, n_bins: int, bin_size: int | None) -> str:
    """``-4000/+4000 bp in 80 bins`` (the window of a contract, for messages)."""
    if upstream is None or bin_size is None:
        return f"{n_bins} bins"
    return f"-{upstream}/+{n_bins * bin_size - upstream} bp in {n_bins} bins"


def describe(header) -> list[str]:
    """Lines that show a model directory's kind and input contract (``histexpr info``)."""
    c = header.contract
    bins = f"{c.n_bins} x {c.bin_size} bp" if c.bin_size is not None else f"{c.n_bins}"
    window = describe_window(c.upstream, c.n_bins, c.bin_size) if c.upstream is not None else "?"
    genes = "?" if header.train_genes is None else str(len(header.train_genes))
    return [
        f"model: {header.kind} ({model_task(header)}), histexpr {header.histexpr_version or '?'}",
        f"marks: {', '.join(c.marks)}; bins: {bins}; window: {window}",
        f"target: {c.target or '?'}; training cell types: {', '.join(c.cells) or '?'}; "
        f"training genes: {genes}",
    ]


def _header(contract):
    """``contract`` when it is a model header (:class:`~histexpr.estimators.bundle.BundleHeader`)."""
    return None if isinstance(contract, InputContract) else contract


def model_task(header) -> str:
    """ "classification" or "regression": what the saved model predicts.

    Read from the header's ``task`` (format 2), its ``extra`` (neural, format 1)
    or the config, whichever names one.
    """
    train = header.config.get("train")
    candidates = (
        getattr(header, "task", None),
        header.extra.get("task"),
        header.config.get("task"),
        train.get("task") if isinstance(train, dict) else None,
    )
    return "classification" if "classification" in candidates else "regression"


def holds_labels(target: str | None, y=None) -> bool:
    """Whether a target is 0/1 labels (a ``label(...)`` transform, or ``y`` only 0/1)."""
    from histexpr.evaluate import is_label

    if str(target or "").startswith("label"):
        return True
    return y is not None and is_label(np.asarray(y))


def check_input(
    contract,
    data,
    n_bins: int | None = None,
    source: str = "input",
    *,
    bin_size: int | None = None,
    target: str | None = None,
    targets: bool = False,
    upstream: int | None = None,
    y=None,
) -> None:
    """Refuse data the model was not trained for, in one line naming both sides.

    The one contract check of predict, evaluate and explain (and of every
    estimator's ``predict``): marks by name, bins, bin size, the window around the
    TSS (where it starts, when both sides record it) and, for evaluation, the
    target (its transform, and labels against a model of expression).

    Parameters
    ----------
    contract : InputContract or BundleHeader
        A header also tells the task and whether the model was trained with mark
        dropout.
    data : HistoneDataset, an open HDF5 reader, or a sequence of mark names
        With names, ``n_bins`` (and optionally ``bin_size``, ``upstream``,
        ``target``) give the rest.
    source : str
        How the data is named in the message (a path).
    targets : bool
        The data's targets will be compared with predictions (evaluation): its
        target transform must be the model's, and a regression model is not
        scored against 0/1 labels.
    y : array-like, optional
        The observed targets, when read (their values tell labels apart from
        expression where the transform does not say).
    """
    # Marks by name: extra marks / another order are conformed by the estimator
    # (data.dataset.conform_marks); missing ones only pass for a mark-dropout model.
    header = _header(contract)
    allow_missing = header is not None and (
        float((header.config.get("train") or {}).get("optim", {}).get("mark_dropout", 0) or 0) > 0
    )
    if header is not None:
        contract = header.contract
    if hasattr(data, "marks"):
        marks, n_bins = tuple(data.marks), int(data.n_bins)
        bin_size = data_bin_size(data) if bin_size is None else bin_size
        upstream = window_upstream(data) if upstream is None else upstream
        if target is None and (
            getattr(data, "y", None) is not None or getattr(data, "has_target", False)
        ):
            target = str(getattr(data, "target", "") or "")
        if y is None and isinstance(getattr(data, "y", None), np.ndarray):
            y = data.y
    else:
        marks = tuple(data)
    missing = [m for m in contract.marks if m not in marks]
    if missing and not allow_missing:
        raise HistexprError(
            f"{source}: missing mark(s) {', '.join(missing)} the model was trained on "
            f"(data has {', '.join(marks)}; train with --set mark_dropout=p to allow it)"
        )
    if n_bins is not None and int(n_bins) != contract.n_bins:
        raise HistexprError(
            f"{source}: {n_bins} bins per example, the model expects {contract.n_bins}"
        )
    if bin_size is not None and contract.bin_size is not None and bin_size != contract.bin_size:
        raise HistexprError(
            f"{source}: {bin_size}-bp bins, the model was trained on {contract.bin_size}-bp bins"
        )
    if upstream is not None and contract.upstream is not None and upstream != contract.upstream:
        raise HistexprError(
            f"{source}: window {describe_window(upstream, int(n_bins), bin_size)} around the "
            "TSS, the model was trained on "
            f"{describe_window(contract.upstream, contract.n_bins, contract.bin_size)}"
        )
    if targets:
        check_target(header or contract, target, y, source)


def check_target(contract, target: str | None, y=None, source: str = "input") -> None:
    """The target part of :func:`check_input` (evaluation only).

    Evaluation streams its blocks, so it calls this again with every ``y`` read,
    when the values (0/1 or not) are known.
    """
    header = _header(contract)
    contract = header.contract if header is not None else contract
    if header is not None and model_task(header) == "classification":
        # a classifier predicts P(above the cell median): scored against labels, or
        # against expression by the AUC of its median split (histexpr.evaluate.fitting_metrics)
        return
    unknown = (None, "", TARGET_PASSTHROUGH)  # "as-given": the file does not say which
    if target not in unknown and contract.target not in unknown and target != contract.target:
        raise HistexprError(
            f"{source}: target {target!r} differs from the model's {contract.target!r}; "
            "scores against other targets are meaningless"
        )
    if holds_labels(target, y) and not holds_labels(contract.target):
        raise HistexprError(
            f"{source}: the target holds 0/1 labels and the model predicts expression "
            "(regression): MSE and R2 against labels are meaningless; evaluate on expression "
            "values, or train a classifier (--set task=classification)"
        )
