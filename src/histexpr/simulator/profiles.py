"""The mark profile model: mean read counts mu[m, b](y, k, c).

Each count is negative binomial with mean ``mu[m, b](y, k, c)`` and per-mark
size ``r[m]``, independently given the gene's expression ``y`` (on the grid), its
latent class ``k`` and the cell type ``c``. The mean is

    mu[m, b] = depth[c, m] * (background[m] + enrich[c, m] * amp[k] * s[m, b](y, k, c))

with the specific signal ``s`` following the biology around a TSS (positions
``x`` in kb, positive = downstream into the gene body; the simulated ``X`` is
in transcript orientation, like featurized data):

- H3K4me3: a sharp promoter peak just downstream of the TSS that grows and
  widens with activity; silent CpG-island promoters keep a small peak (bivalent).
- H3K27me3: a broad TSS-centred domain at silent CpG-island genes (Polycomb
  targets, bivalent with H3K4me3), a flat raised level at other silent genes.
- H3K36me3: a ramp into the gene body (downstream only) for active genes,
  rising with expression.
- H3K4me1: two peaks flanking the TSS at active genes, a central enrichment at
  silent CpG-island genes (poised promoters).
- H3K9me3: low and broad, slightly raised at silent non-CpG genes.
- H3K27ac and H3K9ac (optional, ``SimulatorConfig.marks``): active-promoter marks,
  two peaks flanking the nucleosome-depleted TSS (the downstream one higher) with
  a short spread into the gene body (longer for H3K9ac), rising with activity like
  H3K4me3 but following only ``acetyl_coupling`` of the gene's activity shift, so
  they are correlated with H3K4me3 and more tightly with expression (as in the
  real E003 arrays: r(TSS signal, y) 0.67 / 0.70 vs 0.60 for H3K4me3).

Activity is ``a = sigmoid((y + shift[k] - mid) / scale)``: the discrete shift
classes make some genes' chromatin look more or less active than their
measured expression, which is where most of the irreducible error comes from.
"""

from __future__ import annotations

import numpy as np

from histexpr.data.dataset import BIN_SIZE, MARKS, N_BINS
from histexpr.simulator.config import (
    SIM_MARKS,
    SimulatorConfig,
    cell_params,
    class_table,
    mark_index,
)

_K27, _K36, _K4ME1, _K4ME3, _K9, _K27AC, _K9AC = (
    SIM_MARKS.index(m)
    for m in ("H3K27me3", "H3K36me3", "H3K4me1", "H3K4me3", "H3K9me3", "H3K27ac", "H3K9ac")
)
assert SIM_MARKS[: len(MARKS)] == MARKS


def bin_positions(n_bins: int = N_BINS, bin_size: int = BIN_SIZE) -> np.ndarray:
    """Bin centres in kb relative to the TSS, shape (n_bins,), upstream first."""
    return (np.arange(n_bins) + 0.5 - n_bins / 2) * bin_size / 1000.0


def y_grid(config: SimulatorConfig) -> np.ndarray:
    """Expression grid, shape (n_grid,): exactly 0, then centres of equal bins on (0, y_max]."""
    h = config.y_max / (config.n_grid - 1)
    return np.concatenate([[0.0], (np.arange(1, config.n_grid) - 0.5) * h])


def y_to_bin(y: np.ndarray, config: SimulatorConfig) -> np.ndarray:
    """Grid index of each expression value, shape like ``y``.

    ``y == 0`` (13% of genes: zero RPKM) has its own grid point, so the oracle
    keeps that point mass exactly; values above ``y_max`` go to the last bin.
    """
    y = np.asarray(y, dtype=np.float64)
    h = config.y_max / (config.n_grid - 1)
    idx = np.ceil(y / h).astype(np.int64)
    return np.clip(np.where(y <= 0, 0, idx), 0, config.n_grid - 1)


def _gauss(x: np.ndarray, mu, sd) -> np.ndarray:
    return np.exp(-0.5 * ((x - mu) / sd) ** 2)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def specific_signal(
    config: SimulatorConfig, y: np.ndarray, cpg: np.ndarray, shift: np.ndarray, width: float = 1.0
) -> np.ndarray:
    """Specific (non-background) signal of every mark before depth and enrichment.

    Parameters
    ----------
    config : SimulatorConfig
    y : np.ndarray, shape (G,)
        Expression values log2(RPKM+1).
    cpg, shift : np.ndarray, shape (K,)
        Class attributes (CpG island 0/1, activity shift).
    width : float
        Cell-type profile width factor.

    Returns
    -------
    np.ndarray, shape (G, K, 7, n_bins)
        Marks in the order of :data:`histexpr.simulator.config.SIM_MARKS`.
    """
    p = config.profile
    x = bin_positions()[None, None, :]  # (1, 1, B)
    ye = y[:, None, None] + shift[None, :, None]  # (G, K, 1) effective expression
    a = _sigmoid((ye - p.activity_mid) / p.activity_scale)
    grow = np.clip(ye, 0.0, 10.0) / 10.0
    c = np.broadcast_to(cpg[None, :, None], a.shape)
    G, K = len(y), len(cpg)
    s = np.zeros((G, K, len(SIM_MARKS), x.shape[-1]))

    w0, w1 = p.k4me3_width
    sd4 = width * (w0 + (w1 - w0) * a)
    h4 = p.k4me3_peak * a * (0.5 + 0.5 * grow) * (0.6 + 0.4 * c) + p.k4me3_bivalent * c * (1 - a)
    # Active promoters spread H3K4me3 a few kb into the gene body.
    tail = p.k4me3_tail * np.exp(-np.abs(x) / p.k4me3_decay) * _sigmoid((x - 0.5) / 0.3)
    s[:, :, _K4ME3] = h4 * (_gauss(x, p.k4me3_center, sd4) + a * tail)

    dom = p.k27me3_domain * c * (1 - a) * _gauss(x, 0.0, width * p.k27me3_width)
    s[:, :, _K27] = dom + p.k27me3_silent * (1 - a) + 0.3 * c * _gauss(x, 0.0, 1.0)

    r0, rw = p.k36me3_ramp
    h36 = a**1.5 * (p.k36me3_base + p.k36me3_slope * 10.0 * grow)
    # Active genes: H3K36me3 across the locus except the nucleosome-depleted TSS.
    locus = 0.8 * a * (1.0 - _gauss(x, 0.0, 0.6))
    s[:, :, _K36] = h36 * _sigmoid((x - r0 * width) / rw) + locus

    hf, off, wf = p.k4me1_flank
    flanks = _gauss(x, off * width, wf * width) + _gauss(x, -off * width, wf * width)
    s[:, :, _K4ME1] = hf * a * flanks + p.k4me1_poised * c * (1 - a) * _gauss(x, 0.0, width)

    s[:, :, _K9] = p.k9me3_silent * (1 - c) * (1 - a) * np.ones_like(x)

    # Acetylation: activity from expression plus only part of the class shift.
    ya = y[:, None, None] + p.acetyl_coupling * shift[None, :, None]
    a_ac = _sigmoid((ya - p.activity_mid) / p.activity_scale)
    grow_ac = np.clip(ya, 0.0, 10.0) / 10.0
    up, down = p.acetyl_centers
    sd_ac = width * p.acetyl_width
    body = _sigmoid((x - down) / 0.2)
    for j, idx in enumerate((_K27AC, _K9AC)):
        h = p.acetyl_peak[j] * a_ac * (0.25 + 0.75 * grow_ac)
        tail = p.acetyl_tail * np.exp(-np.maximum(x - down, 0.0) / p.acetyl_decay[j]) * body
        peaks = p.acetyl_upstream * _gauss(x, up, sd_ac) + _gauss(x, down, sd_ac) + tail
        # Nucleosome-depleted region just upstream of the TSS: a sharp dip.
        s[:, :, idx] = h * peaks * (1.0 - p.acetyl_ndr * _gauss(x, -0.05, 0.07))
    return s


def mean_counts(config: SimulatorConfig, cell: str, y: np.ndarray | None = None) -> np.ndarray:
    """Mean read counts of every grid point and class in one cell type.

    Parameters
    ----------
    config : SimulatorConfig
    cell : str
    y : np.ndarray, shape (G,), optional
        Expression values (default: :func:`y_grid`).

    Returns
    -------
    np.ndarray, shape (G, K, n_marks, n_bins), float64
        ``mu[g, k, m, b]`` for the marks of ``config.marks``; always > 0.
    """
    return mean_counts_all(config, cell, y)[:, :, mark_index(config)]


def mean_counts_all(config: SimulatorConfig, cell: str, y: np.ndarray | None = None) -> np.ndarray:
    """:func:`mean_counts` of every mark of ``SIM_MARKS``, shape (G, K, 7, n_bins)."""
    y = y_grid(config) if y is None else np.asarray(y, dtype=np.float64)
    cls = class_table(config)
    cp = cell_params(config, cell)
    s = specific_signal(config, y, cls.cpg, cls.shift, cp.width)
    p = config.profile
    bg = np.asarray((*p.background, *p.acetyl_background))[None, None, :, None]
    spec = (cp.enrich[None, None, :, None] * cls.amp[None, :, None, None]) * s
    return cp.depth[None, None, :, None] * (bg + spec)
