"""Expression atlas: what is already known about each gene in reference cell types.

An *atlas* is a genes x reference-cell-types matrix of expression in the model's
target transform (``log2(RPKM + 1)`` by default). Sources (:func:`resolve_atlas`):

- ``""`` / ``"train"``: the training data's own targets (the default);
- ``"roadmap"``: the packaged Roadmap RNA-seq matrix (:mod:`histexpr.data.reference`);
- a path to a TSV / CSV / Parquet table, genes in rows, cell types in columns,
  values either RPKM (transformed here) or already in the target transform.

Missing entries are NaN. The atlas is saved inside a model directory as plain
arrays (``atlas.npz``, read with ``allow_pickle=False``) so prediction needs nothing else.

This module only reads, validates and stores the table; what the atlas kinds compute
from it (gene statistics, cell similarity, the weighted prior) is estimator-side, in
:mod:`histexpr.estimators.atlas_prior`. No leakage: the estimators drop the predicted
cell's own column with :meth:`Atlas.without`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from histexpr._runtime import Notice, notice
from histexpr.data.dataset import HistoneDataset, canonical_gene_ids, log2_rpkm
from histexpr.errors import ConfigError, DataError

ATLAS_FILE = "atlas.npz"


class AtlasNotice(Notice):
    """An atlas column was excluded, or the atlas does not match the data."""


@dataclass(frozen=True)
class Atlas:
    """Expression of genes in reference cell types.

    Attributes
    ----------
    genes : np.ndarray, shape (n_genes,), str
        Canonical gene ids, sorted and unique.
    cells : np.ndarray, shape (n_cells,), str
        Reference cell-type ids.
    values : np.ndarray, shape (n_genes, n_cells), float32
        Expression in the target transform; NaN where unknown.
    source : str
        Where the atlas came from (``"train"``, ``"roadmap"`` or a file name).
    target : str
        The target transform of ``values``.
    """

    genes: np.ndarray
    cells: np.ndarray
    values: np.ndarray
    source: str = "train"
    target: str = "log2(RPKM+1)"

    def __post_init__(self):
        if self.values.shape != (len(self.genes), len(self.cells)):
            raise DataError(
                f"atlas values have shape {self.values.shape}, expected "
                f"({len(self.genes)}, {len(self.cells)})",
                key="atlas",
            )

    def without(self, cells: Sequence[str]) -> Atlas:
        """The atlas with the columns of ``cells`` removed (ids not present are ignored)."""
        keep = ~np.isin(self.cells, np.asarray(list(cells)).astype(str))
        if keep.all():
            return self
        return Atlas(self.genes, self.cells[keep], self.values[:, keep], self.source, self.target)

    def rows(self, genes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Row of each (canonical) gene and whether it has any finite value.

        Returns
        -------
        rows : np.ndarray, shape (n,), int (0 where absent)
        found : np.ndarray, shape (n,), bool
        """
        genes = np.asarray(genes).astype(str)
        if len(self.genes) == 0:
            return np.zeros(len(genes), dtype=np.int64), np.zeros(len(genes), dtype=bool)
        pos = np.clip(np.searchsorted(self.genes, genes), 0, len(self.genes) - 1)
        found = self.genes[pos] == genes
        if self.values.shape[1]:
            found &= np.isfinite(self.values[pos]).any(axis=1)
        else:
            found[:] = False
        return np.where(found, pos, 0), found

    def save(self, directory) -> Path:
        path = Path(directory) / ATLAS_FILE
        np.savez(
            path,
            genes=self.genes.astype("U"),
            cells=self.cells.astype("U"),
            values=self.values.astype(np.float32),
            source=np.array(self.source),
            target=np.array(self.target),
        )
        return path

    @classmethod
    def load(cls, directory) -> Atlas:
        path = Path(directory) / ATLAS_FILE
        if not path.is_file():
            raise DataError(f"model directory is missing {ATLAS_FILE}", Path(directory))
        with np.load(path, allow_pickle=False) as z:
            return cls(
                z["genes"].astype(str),
                z["cells"].astype(str),
                z["values"].astype(np.float32),
                str(z["source"]),
                str(z["target"]),
            )


def atlas_from_frame(frame, source: str, target: str) -> Atlas:
    """An atlas from a DataFrame (index = gene ids, columns = cell ids); duplicates averaged."""
    import pandas as pd

    df = frame.copy()
    df.index = canonical_gene_ids(df.index.astype(str))
    df.columns = [str(c).strip() for c in df.columns]
    df = df.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    df = df.T.groupby(level=0, sort=False).mean().T  # repeated cell columns
    df = df.groupby(level=0).mean().sort_index()
    return Atlas(
        df.index.to_numpy().astype(str),
        np.asarray(df.columns).astype(str),
        df.to_numpy(np.float32),
        source,
        target,
    )


def atlas_from_dataset(data: HistoneDataset) -> Atlas:
    """The training targets as an atlas (genes x the data's cell types)."""
    import pandas as pd

    if not data.has_target:
        raise DataError("data has no expression values to build an atlas from", key="atlas")
    frame = pd.DataFrame({"gene": data.gene, "cell": data.cell, "y": data.y})
    wide = frame.pivot_table(index="gene", columns="cell", values="y", aggfunc="mean")
    return atlas_from_frame(
        wide[[c for c in data.cells if c in wide.columns]], "train", data.target
    )


def read_atlas_table(path, values: str = "rpkm") -> Atlas:
    """A user table: TSV / CSV / Parquet, first column (or index) gene ids, one column per cell.

    Parameters
    ----------
    path : path
    values : {"rpkm", "transformed"}
        ``"rpkm"`` values are transformed with ``log2(x + 1)``; ``"transformed"``
        values are taken as they are (already the model's target transform).
    """
    import pandas as pd

    if values not in ("rpkm", "transformed"):
        raise ConfigError(f"atlas_values must be rpkm or transformed, got {values!r}")
    path = Path(path)
    if not path.is_file():
        raise DataError("atlas table not found", path)
    name = path.name.lower()
    try:
        if name.endswith(".parquet") or name.endswith(".pq"):
            df = pd.read_parquet(path)
        else:
            sep = "," if name.endswith((".csv", ".csv.gz")) else "\t"
            # index_col=False: the Roadmap RPKM matrix ends every data row with a tab
            df = pd.read_csv(path, sep=sep, index_col=False)
    except (OSError, ValueError, ImportError) as exc:
        raise DataError(f"unreadable atlas table ({exc})", path) from None
    if df.shape[1] < 2 and not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index()
    if df.shape[1] < 2:
        raise DataError("atlas table needs a gene column and at least one cell column", path)
    if isinstance(df.index, pd.RangeIndex):
        df = df.set_index(df.columns[0])
    num = df.apply(pd.to_numeric, errors="coerce")
    if values == "rpkm":
        raw = num.to_numpy(np.float64)
        if (raw < 0).any():
            raise DataError("negative RPKM in atlas table (use atlas_values=transformed?)", path)
        _refuse_log_scaled(raw, path)
        num = pd.DataFrame(log2_rpkm(num.to_numpy()), index=num.index, columns=num.columns)
    target = "log2(RPKM+1)" if values == "rpkm" else "as-given"
    return atlas_from_frame(num, path.name, target)


#: An RPKM table with at least this many values whose largest is below
#: :data:`LOG_SCALED_MAX` is taken for an already log-scaled one: RPKM of real
#: genes reach the thousands (Roadmap: up to 216,449), their log2(x + 1) stays under 18.
LOG_SCALED_MIN_VALUES = 50
LOG_SCALED_MAX = 32.0


def _refuse_log_scaled(values: np.ndarray, path) -> None:
    """A table given as RPKM that is already log-scaled would be transformed twice."""
    finite = values[np.isfinite(values)]
    if len(finite) >= LOG_SCALED_MIN_VALUES and finite.max() < LOG_SCALED_MAX:
        raise DataError(
            f"atlas values look already log-scaled (largest {finite.max():.3g} over "
            f"{len(finite)} values; RPKM reach the thousands): use atlas_values=transformed",
            path,
        )


def roadmap_atlas() -> Atlas:
    """The packaged Roadmap matrix (56 REMC cell types) as ``log2(RPKM + 1)``."""
    from histexpr.data.reference import load_expression

    return atlas_from_frame(load_expression(), "roadmap", "log2(RPKM+1)")


def resolve_atlas(spec: str, values: str, train: HistoneDataset) -> Atlas:
    """The atlas named by a config value (see the module docstring)."""
    spec = (spec or "").strip()
    if spec in ("", "train"):
        atlas = atlas_from_dataset(train)
    elif spec == "roadmap":
        atlas = roadmap_atlas()
    else:
        atlas = read_atlas_table(spec, values)
        if values == "transformed":  # stated to be in the model's target transform
            atlas = replace(atlas, target=train.target)
    if atlas.target != train.target:
        notice(
            f"atlas {atlas.source} is in {atlas.target}, the training targets in {train.target}",
            AtlasNotice,
            stacklevel=2,
        )
    return atlas
