"""Per-cell sequencing depth (histexpr.data.depth): block invariance, known factors."""

from __future__ import annotations

import numpy as np
import pytest

from histexpr.data.depth import MIN_DEPTH_GENES, CellDepths, DepthNotice, depth_factors, rescale


def _counts(seed=0, n=600, depth=(1.0, 2.0)):
    rng = np.random.default_rng(seed)
    cell = np.repeat(np.array(["A", "B"]), n // 2)
    scale = np.where(cell == "A", depth[0], depth[1])[:, None, None]
    X = rng.poisson(3.0 * scale * np.ones((n, 5, 20))).astype(np.float32)
    return X, cell


def test_depths_do_not_depend_on_the_blocks():
    X, cell = _counts()
    whole = CellDepths().add(X, cell).per_cell()
    blocks = CellDepths()
    order = np.random.default_rng(1).permutation(len(X))
    for part in np.array_split(order, 7):
        blocks.add(X[part], cell[part])
    for c in whole:
        np.testing.assert_allclose(blocks.per_cell()[c], whole[c], rtol=1e-12)
    assert blocks.genes("A", X.shape[2]) == 300


def test_factors_bring_each_cell_to_the_reference():
    X, cell = _counts(depth=(1.0, 2.0))
    depths = CellDepths().add(X, cell).per_cell()
    ref = np.mean([depths["A"], depths["B"]], axis=0)
    f = depth_factors(["A", "B"], depths, ref)
    scaled = rescale(X, cell, f)
    after = CellDepths().add(scaled, cell).per_cell()
    np.testing.assert_allclose(after["A"], ref, rtol=1e-5)
    np.testing.assert_allclose(after["B"], ref, rtol=1e-5)
    assert np.all(f["B"] < 1) and np.all(f["A"] > 1)  # the deeper cell type is scaled down


def test_a_new_cell_needs_enough_genes_and_a_known_cell_keeps_its_depth():
    ref = np.full(5, 3.0)
    measured = {"N": np.full(5, 6.0), "F": np.full(5, 6.0)}
    genes = {"N": MIN_DEPTH_GENES, "F": MIN_DEPTH_GENES - 1}
    known = {"K": np.full(5, 1.5)}
    with pytest.warns(DepthNotice, match=r"F \(199\)"):
        f = depth_factors(["K", "N", "F"], known, ref, measured, genes)
    np.testing.assert_allclose(f["K"], 2.0)
    np.testing.assert_allclose(f["N"], 0.5)
    np.testing.assert_allclose(f["F"], 1.0)  # too few genes: read at the training depth


def test_a_mark_without_reads_is_left_as_it_is():
    f = depth_factors(["A"], {"A": np.array([2.0, 0.0])}, np.array([4.0, 1.0]))
    np.testing.assert_allclose(f["A"], [2.0, 1.0])
