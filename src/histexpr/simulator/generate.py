"""Draw simulated data sets and write them straight to HDF5 or the course npz.

Targets are real: log2(RPKM+1) of real genes in real cell types from the
packaged Roadmap matrix. Only the histone counts are simulated, cell type by
cell type (all genes of a cell at once, in fixed-size gene chunks so memory is
bounded), each from its own random stream seeded by (seed, cell): a subset of
the cells regenerates identically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from histexpr._runtime import progress as progress_bar
from histexpr.config import to_dict
from histexpr.data.dataset import MARKS, N_BINS, TARGET_LOG2_RPKM, HistoneDataset, log2_rpkm
from histexpr.errors import ConfigError, DataError
from histexpr.simulator.config import (
    ACETYL_MARKS,
    SIM_MARKS,
    SimulatorConfig,
    cell_seed,
    default_config,
    gene_classes,
    mark_index,
)
from histexpr.simulator.profiles import mean_counts_all, y_to_bin

#: Genes per sampling chunk: fixed (part of the random-stream definition) and
#: small enough that a chunk's float64 work arrays stay near 20 MB.
CHUNK_GENES = 4096


def simulated_genes(config: SimulatorConfig) -> np.ndarray:
    """Gene ids of the data set, in the packaged matrix order, shape (n_genes,)."""
    from histexpr.data.reference import DEEPCHROME_CELLS, load_rpkm

    all_genes = load_rpkm(DEEPCHROME_CELLS[:1]).index.to_numpy().astype(str)
    if config.genes is not None:
        genes = np.asarray(config.genes, dtype=str)
        unknown = np.setdiff1d(genes, all_genes)
        if len(unknown):
            raise ConfigError(
                f"simulator: gene(s) not in the RPKM matrix: {', '.join(unknown[:5])}"
            )
        if len(np.unique(genes)) != len(genes):
            raise ConfigError("simulator: genes must be distinct")
        return all_genes[np.isin(all_genes, genes)]
    if config.n_genes is not None and config.n_genes > len(all_genes):
        raise ConfigError(
            f"simulator: n_genes must be at most {len(all_genes)} (got {config.n_genes})"
        )
    if config.n_genes is None or config.n_genes == len(all_genes):
        return all_genes
    if config.n_genes < 1:
        raise ConfigError("simulator: n_genes must be positive")
    rng = np.random.default_rng(np.random.SeedSequence([int(config.seed), 0x6E6E]))
    pick = np.sort(rng.choice(len(all_genes), size=config.n_genes, replace=False))
    return all_genes[pick]


def expression(config: SimulatorConfig, genes: np.ndarray | None = None) -> np.ndarray:
    """Real targets log2(RPKM+1), shape (n_genes, n_cells), float32, cells in config order."""
    from histexpr.data.reference import load_rpkm

    try:
        rpkm = load_rpkm(config.cells)
    except DataError as exc:
        raise ConfigError(f"simulator: {exc.problem}") from None
    genes = simulated_genes(config) if genes is None else genes
    return log2_rpkm(rpkm.loc[genes].to_numpy())


def simulate_cell(
    config: SimulatorConfig, cell: str, y: np.ndarray, classes: np.ndarray
) -> np.ndarray:
    """Draw the counts of all genes of one cell type.

    Parameters
    ----------
    config : SimulatorConfig
    cell : str
    y : np.ndarray, shape (n,)
        Expression of each gene in this cell type.
    classes : np.ndarray, shape (n,), int
        Latent class of each gene (:func:`gene_classes`).

    Returns
    -------
    np.ndarray, shape (n, n_marks, 100), float32
        Integer read counts of ``config.marks``, transcript orientation.

    The five core marks are drawn together from one stream per cell (whichever
    marks are selected), each optional mark from its own: adding H3K27ac or
    H3K9ac leaves the core counts unchanged.
    """
    mu_table = mean_counts_all(config, cell)  # (G, K, 7, B)
    g = y_to_bin(y, config)
    n_core = len(MARKS)
    r_all = np.asarray((*config.dispersion, *config.acetyl_dispersion), dtype=np.float64)
    streams = [((slice(0, n_core)), np.random.default_rng(cell_seed(config, cell, 1)))]
    for j, m in enumerate(ACETYL_MARKS):
        if m in config.marks:
            rng_j = np.random.default_rng(cell_seed(config, cell, 10 + j))
            streams.append((slice(n_core + j, n_core + j + 1), rng_j))
    full = np.zeros((len(y), len(SIM_MARKS), N_BINS), dtype=np.float32)
    for lo in range(0, len(y), CHUNK_GENES):
        hi = min(lo + CHUNK_GENES, len(y))
        mu_chunk = mu_table[g[lo:hi], classes[lo:hi]]
        for sl, rng in streams:
            mu = mu_chunk[:, sl]
            r = r_all[sl][None, :, None]
            # Negative binomial as a gamma-Poisson mixture: mean mu, variance mu + mu^2 / r.
            lam = rng.gamma(np.broadcast_to(r, mu.shape), mu / r)
            full[lo:hi, sl] = rng.poisson(lam)
    return full[:, mark_index(config)]


def _iter_cells(config: SimulatorConfig, progress: bool):
    genes = simulated_genes(config)
    Y = expression(config, genes)
    classes = gene_classes(config, genes)
    cells = list(config.cells)
    if progress:
        cells = progress_bar(len(cells), "simulating", "cell", iterable=cells)
    for j, cell in enumerate(cells):
        yield cell, genes, Y[:, j], simulate_cell(config, cell, Y[:, j], classes)


def _file_meta(config: SimulatorConfig, unseen_cells) -> dict:
    """Metadata stored with simulated data: the config and the unseen cell types."""
    from histexpr.data.reference import UNSEEN_CELLS

    if unseen_cells is None:
        unseen_cells = [c for c in config.cells if c in UNSEEN_CELLS]
    unknown = sorted(set(unseen_cells) - set(config.cells))
    if unknown:
        raise ConfigError(f"simulator: unseen cell type(s) {', '.join(unknown)} are not simulated")
    return {"simulator": to_dict(config), "unseen_cells": list(unseen_cells)}


def simulate(
    config: SimulatorConfig | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = False,
    fmt: str = "h5",
    unseen_cells=None,
):
    """Simulate a data set, in memory or streamed to a file.

    Parameters
    ----------
    config : SimulatorConfig, optional
        Default: :func:`default_config`.
    out : path, optional
        Destination file; when None the data set is returned in memory.
    progress : bool
        Show a progress bar over cell types.
    fmt : {"h5", "npz"}
        File format for ``out``: the histexpr HDF5 dataset (keeps the simulator
        config in ``meta["simulator"]``) or the course npz (integer gene ids,
        expression in column 6; it has no place for the config).
    unseen_cells : sequence of str, optional
        Cell types to designate as never seen in training, recorded in
        ``meta["unseen_cells"]`` for :func:`histexpr.workflows.experiment.run_experiment`.
        Default: those of ``config.cells`` among the seed's six unseen cell types
        (:data:`histexpr.data.reference.UNSEEN_CELLS`).

    Returns
    -------
    HistoneDataset or Path
        The data (examples grouped by cell type in config order) or ``out``.
    """
    config = default_config() if config is None else config
    meta = _file_meta(config, unseen_cells)
    if out is None:
        parts = [
            HistoneDataset(
                X, y, np.full(len(genes), cell), genes, config.marks, TARGET_LOG2_RPKM, meta
            )
            for cell, genes, y, X in _iter_cells(config, progress)
        ]
        ds = HistoneDataset.concat(parts)
        ds.meta = meta
        return ds
    if fmt == "h5":
        from histexpr.data.hdf5 import H5Writer

        marks = tuple(config.marks)
        with H5Writer(out, marks, N_BINS, True, target=TARGET_LOG2_RPKM, meta=meta) as w:
            for cell, genes, y, X in _iter_cells(config, progress):
                w.append(HistoneDataset(X, y, np.full(len(genes), cell), genes, marks))
        return Path(out)
    if fmt == "npz":
        from histexpr.data.npz import NpzWriter, gene_to_int

        if tuple(config.marks) != MARKS:
            raise ConfigError(
                f"the course npz holds exactly the five core marks ({', '.join(MARKS)}); "
                "write HDF5 for other marks"
            )

        with NpzWriter(out) as w:
            for cell, genes, y, X in _iter_cells(config, progress):
                w.write_cell(cell, X, gene_to_int(genes), y)
        return Path(out)
    raise ConfigError(f"unknown simulator output format {fmt!r} (use 'h5' or 'npz')")


def cache_root(path: str | os.PathLike | None = None) -> Path:
    """Cache folder: ``path``, else ``$HISTEXPR_CACHE``, else ``~/.cache/histexpr``."""
    if path is not None:
        return Path(path)
    env = os.environ.get("HISTEXPR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "histexpr"


def default_dataset(cache_dir: str | os.PathLike | None = None, progress: bool = False) -> Path:
    """Path of the embedded demo data set, generated on first use and cached.

    The cached file is reused only if its stored metadata (simulator config and
    unseen cell types) equals what :func:`simulate` writes for
    :func:`default_config`; otherwise (or if it is unreadable) it is regenerated.
    Writing is atomic, so concurrent first uses are safe.

    Parameters
    ----------
    cache_dir : path, optional
        See :func:`cache_root`.
    progress : bool

    Returns
    -------
    Path
    """
    from histexpr.data.hdf5 import open_h5

    config = default_config()
    path = cache_root(cache_dir) / f"simulated-demo-v{config.version}.h5"
    expected = _file_meta(config, None)
    if path.exists():
        try:
            with open_h5(path) as h:
                if h.meta == expected:
                    return path
        except DataError:
            pass
    return simulate(config, out=path, progress=progress)
