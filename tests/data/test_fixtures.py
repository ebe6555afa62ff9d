"""The shipped real fixtures (tests/data/fixtures) agree with the packaged reference tables.

They stand in for ../shared/data on a user's clone, so they must be the real thing: the
RPKM slice equals the packaged Roadmap matrix on its genes, and the binned E003 genes carry
log2(RPKM+1) of E003.
"""

import numpy as np
import pandas as pd

from conftest import FIXTURES
from histexpr import datasets


def test_rpkm_slice_is_the_packaged_matrix_on_its_genes():
    ref = pd.read_csv(
        FIXTURES / "roadmap" / "57epigenomes.RPKM.pc.gz", sep="\t", index_col=False
    ).set_index("gene_id")
    ours = datasets.load_rpkm()
    assert len(ref) == 130 and ref.index.isin(ours.index).all()
    np.testing.assert_allclose(
        ours.loc[ref.index].to_numpy(), ref[list(ours.columns)].to_numpy(), rtol=1e-6
    )


def test_binned_e003_genes_carry_e003_expression_and_real_counts():
    z = np.load(FIXTURES / "e003_binned.npz", allow_pickle=False)
    assert z["X"].shape == (100, 5, 100) and (z["X"] >= 0).all()
    rpkm = datasets.load_rpkm(["E003"])["E003"]
    np.testing.assert_allclose(z["y"], np.log2(rpkm.loc[z["gene"]].to_numpy() + 1), atol=0.01)
    # real H3K4me3 (mark 3) peaks at the TSS of expressed genes
    high = z["y"] > np.median(z["y"])
    assert z["X"][high, 3, 45:55].mean() > 3 * z["X"][~high, 3, 45:55].mean()
