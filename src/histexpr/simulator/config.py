"""Configuration of the REMC simulator: everything needed to rebuild its likelihood.

A :class:`SimulatorConfig` is stored (via :func:`histexpr.config.to_dict`) in the
``meta["simulator"]`` of every file the simulator writes, so the Bayes oracle can
be rebuilt from a file alone. The numbers of :class:`ProfileParams` were
calibrated against real Roadmap data (see ``docs/simulator.md``).
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from histexpr.data.dataset import MARKS, mark_name
from histexpr.errors import ConfigError

#: Training cell types of the embedded demo data set (real EIDs of TRAIN_CELLS).
DEFAULT_TRAIN_CELLS: tuple[str, ...] = (
    "E003",
    "E004",
    "E005",
    "E016",
    "E027",
    "E037",
    "E050",
    "E062",
    "E066",
    "E094",
    "E116",
    "E122",
)
#: Cell types of the demo data set never used for training (from UNSEEN_CELLS).
DEFAULT_UNSEEN_CELLS: tuple[str, ...] = ("E071", "E096", "E113")
#: Bump when the profile model changes, so cached files are regenerated.
MODEL_VERSION = 1
#: Optional active-promoter (acetylation) marks, in their fixed order.
ACETYL_MARKS: tuple[str, ...] = ("H3K27ac", "H3K9ac")
#: Every mark the simulator can draw: the five core marks, then the acetylation marks.
SIM_MARKS: tuple[str, ...] = MARKS + ACETYL_MARKS


@dataclass(frozen=True)
class ProfileParams:
    """Shape and scale constants of the mark profiles (reads per 100-bp bin).

    Marks are in the canonical order of :data:`histexpr.data.dataset.MARKS`:
    H3K27me3, H3K36me3, H3K4me1, H3K4me3, H3K9me3. Positions are in kb relative
    to the TSS, positive = downstream (into the gene body).
    """

    #: Activity a(y) = sigmoid((y + shift - activity_mid) / activity_scale).
    activity_mid: float = 2.0
    activity_scale: float = 1.2
    #: Background reads per bin of each mark at depth factor 1.
    background: tuple[float, ...] = (1.1, 0.7, 1.2, 0.8, 0.9)
    #: H3K4me3 promoter peak: height at full activity, centre, width (silent, active).
    k4me3_peak: float = 150.0
    k4me3_center: float = 0.15
    k4me3_width: tuple[float, ...] = (0.35, 0.7)
    #: H3K4me3 height of a silent CpG-island promoter (the bivalent state).
    k4me3_bivalent: float = 12.0
    #: H3K4me3 spread into the gene body: fraction of the peak height, decay (kb).
    k4me3_tail: float = 0.07
    k4me3_decay: float = 3.0
    #: H3K27me3: broad TSS-centred domain of silent CpG genes, flat level of others.
    k27me3_domain: float = 10.0
    k27me3_width: float = 1.5
    k27me3_silent: float = 1.0
    #: H3K36me3 gene-body plateau: base + slope * min(y, 10), ramp centre, ramp width.
    k36me3_base: float = 1.4
    k36me3_slope: float = 0.15
    k36me3_ramp: tuple[float, ...] = (1.0, 0.7)
    #: H3K4me1: flanking peaks of active genes (height, offset, width), silent-CpG centre.
    k4me1_flank: tuple[float, ...] = (1.6, 2.0, 1.2)
    k4me1_poised: float = 1.6
    #: H3K9me3: extra broad signal at silent non-CpG genes.
    k9me3_silent: float = 0.6
    #: Acetylation marks (H3K27ac, H3K9ac; optional, see ``SimulatorConfig.marks``):
    #: background reads per bin, and the height of the downstream promoter peak at
    #: full activity.
    acetyl_background: tuple[float, ...] = (1.2, 1.5)
    acetyl_peak: tuple[float, ...] = (28.0, 46.0)
    #: Fraction of a gene's activity shift the acetylation marks follow: below 1
    #: they track the measured expression more tightly than H3K4me3 does.
    acetyl_coupling: float = 0.65
    #: Peaks flanking the nucleosome-depleted TSS: centres (kb, upstream and
    #: downstream), common width (kb), upstream height relative to downstream.
    acetyl_centers: tuple[float, ...] = (-0.3, 0.15)
    acetyl_width: float = 0.2
    acetyl_upstream: float = 0.6
    #: Depth of the dip at the nucleosome-depleted region (-50 bp, sd 70 bp).
    acetyl_ndr: float = 0.6
    #: Spread into the gene body (kb decay of each acetylation mark) and its height.
    acetyl_decay: tuple[float, ...] = (0.6, 1.2)
    acetyl_tail: float = 0.35


@dataclass(frozen=True)
class SimulatorConfig:
    """All parameters of a simulated data set.

    Attributes
    ----------
    seed : int
        Master seed; per-cell and per-gene streams are derived from it.
    cells : tuple of str
        Roadmap EIDs (columns of the packaged RPKM matrix) to simulate.
    n_genes : int or None
        Size of a seed-determined random subset of the 19,795 genes (None: all).
    genes : tuple of str or None
        Explicit ENSG ids (overrides ``n_genes``).
    n_grid : int
        Points of the expression grid, one of them at exactly y = 0.
    y_max : float
        Upper end of the grid (log2(RPKM+1) of the largest RPKM is 17.7).
    marks : tuple of str
        Marks to draw, in this order: any distinct subset of :data:`SIM_MARKS` (the
        five core marks, the default, plus H3K27ac and H3K9ac). The core marks' counts
        do not depend on which other marks are drawn (each optional mark has its own
        random stream), so a 7-mark data set extends the 5-mark one.
    dispersion : tuple of float, shape (5,)
        Negative-binomial size r per core mark (variance = mu + mu^2 / r).
    acetyl_dispersion : tuple of float, shape (2,)
        Size r of H3K27ac and H3K9ac.
    depth_sd, enrich_sd, width_sd : float
        Log-normal spread across cell types of the per-mark sequencing depth, the
        per-mark enrichment of specific signal over background, and the profile width.
    cpg_frac : float
        Probability of the CpG-island promoter class.
    shifts, shift_probs : tuple of float
        Discrete per-gene offsets of the activity (chromatin looks more or less
        active than the measured expression) and their probabilities.
    amps, amp_probs : tuple of float
        Discrete per-gene amplitude of the specific signal and their probabilities.
    profile : ProfileParams
    version : int
        Profile-model version (:data:`MODEL_VERSION`).
    """

    seed: int = 0
    cells: tuple[str, ...] = DEFAULT_TRAIN_CELLS + DEFAULT_UNSEEN_CELLS
    n_genes: int | None = 2000
    genes: tuple[str, ...] | None = None
    n_grid: int = 128
    y_max: float = 18.0
    dispersion: tuple[float, ...] = (0.7, 1.5, 1.5, 1.0, 1.5)
    marks: tuple[str, ...] = MARKS
    acetyl_dispersion: tuple[float, ...] = (0.8, 1.0)
    depth_sd: float = 0.2
    enrich_sd: float = 0.15
    width_sd: float = 0.1
    cpg_frac: float = 0.6
    shifts: tuple[float, ...] = (-8.0, -2.0, 0.0, 2.0)
    shift_probs: tuple[float, ...] = (0.1, 0.2, 0.5, 0.2)
    amps: tuple[float, ...] = (0.6, 1.0, 1.6)
    amp_probs: tuple[float, ...] = (0.25, 0.5, 0.25)
    profile: ProfileParams = field(default_factory=ProfileParams)
    version: int = MODEL_VERSION

    def __post_init__(self):
        if not self.cells:
            raise ConfigError("simulator: no cell types given")
        if len(set(self.cells)) != len(self.cells):
            raise ConfigError("simulator: cell types must be distinct")
        if len(self.dispersion) != len(MARKS):
            raise ConfigError(f"simulator: dispersion needs {len(MARKS)} values")
        if len(self.acetyl_dispersion) != len(ACETYL_MARKS):
            raise ConfigError(f"simulator: acetyl_dispersion needs {len(ACETYL_MARKS)} values")
        # one spelling of every mark name (H3k27ac -> H3K27ac; near misses refused)
        marks = tuple(mark_name(m) for m in self.marks)
        object.__setattr__(self, "marks", marks)
        unknown = [m for m in marks if m not in SIM_MARKS]
        if not marks or unknown or len(set(marks)) != len(marks):
            raise ConfigError(
                f"simulator: marks must be distinct names from {', '.join(SIM_MARKS)}"
                + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            )
        if self.n_grid < 8:
            raise ConfigError("simulator: n_grid must be at least 8")
        for vals, probs, name in (
            (self.shifts, self.shift_probs, "shift"),
            (self.amps, self.amp_probs, "amp"),
        ):
            if len(vals) != len(probs) or not vals:
                raise ConfigError(f"simulator: {name}s and {name}_probs differ in length")
            if abs(sum(probs) - 1.0) > 1e-6 or min(probs) <= 0:
                raise ConfigError(f"simulator: {name}_probs must be positive and sum to 1")
        if not 0.0 < self.cpg_frac < 1.0:
            raise ConfigError("simulator: cpg_frac must be in (0, 1)")


def mark_dispersion(config: SimulatorConfig) -> np.ndarray:
    """Negative-binomial size r of each mark of ``config.marks``, shape (n_marks,)."""
    r = dict(zip(SIM_MARKS, (*config.dispersion, *config.acetyl_dispersion), strict=True))
    return np.asarray([r[m] for m in config.marks], dtype=np.float64)


def mark_index(config: SimulatorConfig) -> np.ndarray:
    """Position of each mark of ``config.marks`` in :data:`SIM_MARKS`, shape (n_marks,)."""
    return np.asarray([SIM_MARKS.index(m) for m in config.marks], dtype=np.int64)


def default_config() -> SimulatorConfig:
    """The embedded demo data set: 12 training + 3 unseen cell types, 2,000 genes."""
    return SimulatorConfig()


class ClassTable(NamedTuple):
    """The discrete latent gene classes (product of CpG x shift x amplitude).

    Attributes
    ----------
    cpg : np.ndarray, shape (K,), float (0 or 1)
    shift : np.ndarray, shape (K,)
    amp : np.ndarray, shape (K,)
    prob : np.ndarray, shape (K,)
        Prior probability of each class (independent of expression).
    """

    cpg: np.ndarray
    shift: np.ndarray
    amp: np.ndarray
    prob: np.ndarray


def class_table(config: SimulatorConfig) -> ClassTable:
    """Enumerate the latent classes of ``config`` in a fixed order."""
    cpg, shift, amp, prob = [], [], [], []
    for c, pc in ((0.0, 1.0 - config.cpg_frac), (1.0, config.cpg_frac)):
        for s, ps in zip(config.shifts, config.shift_probs, strict=True):
            for a, pa in zip(config.amps, config.amp_probs, strict=True):
                cpg.append(c)
                shift.append(s)
                amp.append(a)
                prob.append(pc * ps * pa)
    return ClassTable(*(np.asarray(v, dtype=np.float64) for v in (cpg, shift, amp, prob)))


def _hash_uniform(seed: int, salt: str, keys) -> np.ndarray:
    # A cryptographic hash of (seed, salt, key): a gene's class does not depend on
    # which other genes are simulated, and the factors are independent (a linear
    # checksum such as crc32 would correlate the salts).
    vals = [
        int.from_bytes(hashlib.blake2b(f"{seed}:{salt}:{k}".encode(), digest_size=6).digest())
        for k in keys
    ]
    return (np.asarray(vals, dtype=np.float64) + 0.5) / 2.0**48


def gene_classes(config: SimulatorConfig, genes) -> np.ndarray:
    """Latent class index of each gene (deterministic in seed and gene id).

    Parameters
    ----------
    config : SimulatorConfig
    genes : sequence of str, shape (n,)

    Returns
    -------
    np.ndarray, shape (n,), int64
        Index into :func:`class_table`.
    """
    u_cpg = _hash_uniform(config.seed, "cpg", genes)
    u_shift = _hash_uniform(config.seed, "shift", genes)
    u_amp = _hash_uniform(config.seed, "amp", genes)
    cpg = (u_cpg < config.cpg_frac).astype(np.int64)
    shift = np.searchsorted(np.cumsum(config.shift_probs)[:-1], u_shift, side="right")
    amp = np.searchsorted(np.cumsum(config.amp_probs)[:-1], u_amp, side="right")
    n_s, n_a = len(config.shifts), len(config.amps)
    return (cpg * n_s + shift) * n_a + amp


def cell_seed(config: SimulatorConfig, cell: str, purpose: int) -> np.random.SeedSequence:
    """Seed of a per-cell random stream, independent of the other cells simulated."""
    return np.random.SeedSequence([int(config.seed), zlib.crc32(cell.encode()), int(purpose)])


class CellParams(NamedTuple):
    """Per-cell-type nuisance parameters.

    Attributes
    ----------
    depth : np.ndarray, shape (7,)
        Sequencing-depth factor of each mark of :data:`SIM_MARKS` (multiplies all reads).
    enrich : np.ndarray, shape (7,)
        ChIP enrichment of each mark of :data:`SIM_MARKS` (multiplies the specific
        signal only).
    width : float
        Profile width factor of the cell type.
    """

    depth: np.ndarray
    enrich: np.ndarray
    width: float


def cell_params(config: SimulatorConfig, cell: str) -> CellParams:
    """Depth, enrichment and width factors of one cell type (log-normal, mean-1 median)."""
    rng = np.random.default_rng(cell_seed(config, cell, 0))
    z = rng.standard_normal(2 * len(MARKS) + 1)
    m = len(MARKS)
    # The optional marks draw from their own stream: the core marks' factors (and
    # counts) are those of a 5-mark data set.
    za = np.random.default_rng(cell_seed(config, cell, 2)).standard_normal(2 * len(ACETYL_MARKS))
    a = len(ACETYL_MARKS)
    return CellParams(
        depth=np.exp(config.depth_sd * np.concatenate([z[:m], za[:a]])),
        enrich=np.exp(config.enrich_sd * np.concatenate([z[m : 2 * m], za[a:]])),
        width=float(np.exp(config.width_sd * z[-1])),
    )
