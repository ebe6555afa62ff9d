"""Packaged real reference data (tables shipped inside the package).

The real reference data ship inside the package (``histexpr/resources``), so an
installed histexpr needs no network and no external folder:

- the Roadmap Epigenomics RNA-seq RPKM matrix (19,795 protein-coding genes x
  E000 + the 56 REMC epigenomes of DeepChrome),
- the epigenome metadata (group, name, anatomy, type of every EID),
- DeepChrome's gene list (19,802 ids in file order) and its contiguous
  train/valid/test split,
- GENCODE v10 TSS coordinates (hg19) used by Roadmap.

Sources: Roadmap Epigenomics Consortium, Nature 518:317 (2015);
Singh et al., DeepChrome, Bioinformatics 32:i639 (2016).
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
import pandas as pd

from histexpr.data.dataset import log2_rpkm

#: The 56 REMC epigenomes of the DeepChrome data set, in its order.
DEEPCHROME_CELLS: tuple[str, ...] = (
    "E003 E004 E005 E006 E007 E011 E012 E013 E016 E024 E027 E028 E037 E038 E047 E050 "
    "E053 E054 E055 E056 E057 E058 E059 E061 E062 E065 E066 E070 E071 E079 E082 E084 "
    "E085 E087 E094 E095 E096 E097 E098 E100 E104 E105 E106 E109 E112 E113 E114 E116 "
    "E117 E118 E119 E120 E122 E123 E127 E128"
).split()
#: The 6 cell types held out of training in the seed (never seen by the models).
UNSEEN_CELLS: tuple[str, ...] = ("E071", "E084", "E087", "E096", "E112", "E113")
#: The 50 training cell types of the seed.
TRAIN_CELLS: tuple[str, ...] = tuple(c for c in DEEPCHROME_CELLS if c not in UNSEEN_CELLS)


def _resource(name: str):
    return resources.files("histexpr") / "resources" / name


@functools.lru_cache(maxsize=1)
def _rpkm_cached() -> pd.DataFrame:
    with _resource("rpkm_57epigenomes.tsv.gz").open("rb") as fh:
        # Every data row ends with a trailing tab: index_col=False keeps columns aligned.
        df = pd.read_csv(fh, sep="\t", index_col=False, compression="gzip")
    return df.set_index("gene_id").astype(np.float32)


def load_rpkm(cells=None) -> pd.DataFrame:
    """Roadmap RNA-seq RPKM of 19,795 protein-coding genes.

    Parameters
    ----------
    cells : sequence of str, optional
        EIDs to keep (default: the 56 DeepChrome cell types).

    Returns
    -------
    pd.DataFrame, shape (n_genes, n_cells)
        RPKM values, index = ENSG gene ids, columns = EIDs.
    """
    df = _rpkm_cached()
    cols = list(DEEPCHROME_CELLS if cells is None else cells)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        from histexpr.errors import DataError

        raise DataError(f"no RPKM for cell type(s) {', '.join(missing)}", key="cells")
    return df[cols].copy()


def load_expression(cells=None) -> pd.DataFrame:
    """The packaged RPKM matrix transformed to ``log2(RPKM + 1)`` (the default target)."""
    rpkm = load_rpkm(cells)
    return pd.DataFrame(log2_rpkm(rpkm.to_numpy()), index=rpkm.index, columns=rpkm.columns)


@functools.lru_cache(maxsize=1)
def load_epigenomes() -> pd.DataFrame:
    """Roadmap epigenome metadata: ``eid`` index; group, mnemonic, name, anatomy, type."""
    with _resource("epigenomes.tsv.gz").open("rb") as fh:
        return pd.read_csv(fh, sep="\t", compression="gzip", dtype=str).set_index("eid")


@functools.lru_cache(maxsize=1)
def deepchrome_genes() -> tuple[str, ...]:
    """DeepChrome's 19,802 gene ids in file order (7 ids occur twice)."""
    with _resource("deepchrome_genes.txt.gz").open("rb") as fh:
        import gzip

        text = gzip.decompress(fh.read()).decode()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def deepchrome_split() -> dict[str, np.ndarray]:
    """DeepChrome's contiguous gene split: row indices into :func:`deepchrome_genes`.

    Returns
    -------
    dict
        ``{"train": idx, "valid": idx, "test": idx}`` with 6601 / 6601 / 6600 rows.
    """
    n = len(deepchrome_genes())
    return {
        "train": np.arange(0, 6601),
        "valid": np.arange(6601, 13202),
        "test": np.arange(13202, n),
    }


@functools.lru_cache(maxsize=1)
def load_tss() -> pd.DataFrame:
    """GENCODE v10 (hg19) TSS table: chrom, start, end, strand, gene_id, name."""
    with _resource("gencode10_tss.tsv.gz").open("rb") as fh:
        return pd.read_csv(
            fh,
            sep="\t",
            compression="gzip",
            header=None,
            names=["chrom", "start", "end", "strand", "gene_id", "name"],
            dtype={"chrom": str, "strand": str, "gene_id": str, "name": str},
        )
