"""Shared fixtures: small synthetic data with a planted signal."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from histexpr.data.dataset import MARKS, HistoneDataset

#: The repository root (tests/ is directly below it).
REPO_ROOT = Path(__file__).resolve().parents[1]
#: The larger real data beside the clone (present in CI; absent on a user's clone).
#: ``HISTEXPR_SHARED_DATA`` points elsewhere (e.g. at a missing folder, to check that the
#: real-format tests still run on the shipped fixtures).
SHARED_DATA = Path(os.environ.get("HISTEXPR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
#: Small real fixtures shipped in the repository, laid out like SHARED_DATA (see its README).
FIXTURES = REPO_ROOT / "tests" / "data" / "fixtures"


def real_data(relative: str) -> Path:
    """``SHARED_DATA / relative`` when present, else the shipped fixture of that name.

    The fixture holds the same format (the DeepChrome toy rows byte for byte; a slice
    of the RPKM matrix), so the real-format tests run on a fresh clone.
    """
    shared = SHARED_DATA / relative
    return shared if shared.exists() else FIXTURES / relative


#: The narrowest ConvNet widths that still train: tests of the neural kinds use them.
TINY = "4,4,8,8,8,8,16,16"
#: Training overrides that make a neural test take seconds.
FAST = {"channels": TINY, "progress": False, "batch_size": 32, "lr": 1e-2, "threads": 1}


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


def make_graded_planted(n_genes=150, cells=("A", "B", "C"), seed=0):
    """Neural-test data: counts with depth differing by cell; a latent activity raises central H3K4me3,
    lowers H3K27me3 and sets y."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, c in enumerate(cells):
        depth = 1.0 + 0.5 * i
        activity = rng.uniform(-1, 1, n_genes)
        lam = rng.gamma(1.0, 1.0, size=(n_genes, 5, 100))
        lam[:, 3, 40:60] += 8 / (1 + np.exp(-3 * activity))[:, None]
        lam[:, 0, :] += 3 / (1 + np.exp(3 * activity))[:, None]
        X = rng.poisson(lam * depth).astype(np.float32)
        y = 4 + 2 * activity + rng.normal(0, 0.2, n_genes)
        genes = np.array([f"g{j}" for j in range(n_genes)])
        parts.append(HistoneDataset(X, y, np.full(n_genes, c), genes))
    return HistoneDataset.concat(parts)


@pytest.fixture
def planted() -> HistoneDataset:
    return make_planted()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} not present")
    return SHARED_DATA


def run_cli(*args) -> int:
    """Run ``histexpr ARGS...`` in this process; return the exit code."""
    from histexpr.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def atlas_parts(cells=("E003", "E004", "E005", "E006", "E007"), new_cell="E007"):
    """Planted data split for the atlas kinds: training cells x 90 known genes, and the
    new cell type on those known genes and on 30 new ones."""
    data = make_planted(n_genes=120, cells=cells, seed=3)
    known = np.isin(data.gene, np.unique(data.gene)[:90])
    new = data.cell == new_cell
    return {
        "train": data.subset(~new & known),
        "unseen_known": data.subset(new & known),
        "unseen_new": data.subset(new & ~known),
    }


def quiet_predict(est, data):
    """``est.predict(data)`` without the atlas kinds' "column excluded" notices."""
    import warnings

    from histexpr.data.atlas import AtlasNotice

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AtlasNotice)
        return est.predict(data)


def quiet_atlas(fn, *args):
    """``fn(*args)`` without the atlas kinds' notices (column excluded, too few genes)."""
    import warnings

    from histexpr.data.atlas import AtlasNotice
    from histexpr.estimators.atlas_cells import FewGenesNotice

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AtlasNotice)
        warnings.simplefilter("ignore", FewGenesNotice)
        return fn(*args)


def atlas_with_truth(atlas, data):
    """``atlas`` plus a column holding the true values of ``data``'s (single) cell: the
    leakage tests plant it and check that predictions do not change."""
    import dataclasses

    from histexpr.data.dataset import canonical_gene_ids

    rows, found = atlas.rows(canonical_gene_ids(data.gene))
    col = np.full((len(atlas.genes), 1), np.nan, np.float32)
    col[rows[found], 0] = data.y[found]
    cells = np.append(atlas.cells, data.cells[0])
    return dataclasses.replace(atlas, cells=cells, values=np.hstack([atlas.values, col]))


@pytest.fixture
def project(base, tmp_path, monkeypatch) -> Path:
    """A fresh copy of the test module's ``base`` project folder, as the current folder."""
    import shutil

    root = tmp_path / "project"
    shutil.copytree(base, root)
    monkeypatch.chdir(root)
    return root
