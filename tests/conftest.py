"""Shared fixtures: small synthetic data with a planted signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from histexpr.data.dataset import MARKS, HistoneDataset

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_planted(
    n_genes: int = 200, cells=("E003", "E004", "E005"), seed: int = 0
) -> HistoneDataset:
    """Counts whose expression is a known function of H3K4me3 and H3K27me3.

    Each gene has a latent activity ``a``; in each cell type it shifts a little.
    H3K4me3 around the TSS (bins 45-55) has rate ``exp(1 + a)``, H3K27me3 over the
    window rate ``exp(0.5 - a)``, other marks are noise; ``y = 3 + 2a + noise``.
    """
    rng = np.random.default_rng(seed)
    a_gene = rng.normal(size=n_genes)
    Xs, ys, cs, gs = [], [], [], []
    for ci, c in enumerate(cells):
        a = a_gene + 0.3 * rng.normal(size=n_genes)
        rate = np.full((n_genes, len(MARKS), 100), 0.5)
        rate[:, 3, 45:55] = np.exp(1.0 + a)[:, None]
        rate[:, 0, :] = np.exp(0.5 - a)[:, None]
        rate *= 1.0 + 0.2 * ci  # sequencing depth differs per cell type
        Xs.append(rng.poisson(rate).astype(np.float32))
        ys.append((3 + 2 * a + 0.3 * rng.normal(size=n_genes)).astype(np.float32))
        cs.append(np.full(n_genes, c))
        gs.append(np.array([f"ENSG{i:011d}" for i in range(n_genes)]))
    return HistoneDataset(
        X=np.concatenate(Xs), y=np.concatenate(ys), cell=np.concatenate(cs), gene=np.concatenate(gs)
    )


@pytest.fixture
def planted() -> HistoneDataset:
    return make_planted()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} not present")
    return SHARED_DATA
