"""The one gene hold-out (histexpr.data.splits.holdout_mask) and the draws it keeps."""

import numpy as np
import pytest

from histexpr.data.dataset import HistoneDataset
from histexpr.data.splits import gene_fold_of, hold_out_genes, holdout_mask, split_genes
from histexpr.errors import DataError

GENES = np.array([f"g{i:03d}" for i in range(97)])
# every gene in three cell types, rows shuffled
ROWS = np.random.default_rng(7).permutation(np.repeat(GENES, 3))


@pytest.mark.parametrize("draw", ["first", "folds", "choice"])
def test_every_example_of_a_gene_is_on_one_side_whatever_the_order(draw):
    held = holdout_mask(ROWS, 0.2, seed=3, draw=draw)
    inside = set(ROWS[held])
    assert inside and not inside & set(ROWS[~held])
    again = holdout_mask(ROWS[::-1], 0.2, seed=3, draw=draw)[::-1]
    np.testing.assert_array_equal(held, again)
    assert not np.array_equal(held, holdout_mask(ROWS, 0.2, seed=4, draw=draw))


def test_the_first_draw_is_the_valid_part_of_a_random_gene_split():
    held = holdout_mask(ROWS, 0.3, seed=5)
    split = split_genes(ROWS, "random", valid_fraction=0.3, test_fraction=0.0, seed=5)
    assert sorted(set(ROWS[held])) == split.valid.tolist()
    assert len(split.valid) == round(0.3 * len(GENES))


def test_the_folds_draw_is_fold_zero_and_holds_out_nothing_below_min_held():
    held = holdout_mask(ROWS, 0.1, seed=2, draw="folds", min_held=5)
    np.testing.assert_array_equal(held, gene_fold_of(ROWS, 10, seed=2) == 0)
    # 97 genes x 0.05 < 5 genes: no hold-out; nor with fraction 0
    assert not holdout_mask(ROWS, 0.05, seed=2, draw="folds", min_held=5).any()
    assert not holdout_mask(ROWS, 0.0, seed=2, draw="folds").any()


def test_the_choice_draw_keeps_a_gene_and_continues_a_generator():
    # the draw of Generator.choice over the sorted ids (the networks' early stopping)
    want = np.random.default_rng(9).choice(GENES, round(0.1 * len(GENES)), replace=False)
    held = holdout_mask(ROWS, 0.1, seed=9, draw="choice")
    assert set(ROWS[held]) == set(want)
    # at least one gene held out and one kept, even at extreme fractions
    two = np.array(["a", "b", "a", "b"])
    assert holdout_mask(two, 0.9, seed=0, draw="choice").sum() == 2
    assert holdout_mask(two, 0.01, seed=0, draw="choice").sum() == 2
    assert not holdout_mask(np.array(["a", "a"]), 0.5, seed=0, draw="choice").any()
    # a Generator is drawn from, so the caller's later draws follow on from it
    rng = np.random.default_rng(11)
    by_rng = holdout_mask(ROWS, 0.2, seed=rng, draw="choice")
    ref = np.random.default_rng(11)
    ref.choice(GENES, round(0.2 * len(GENES)), replace=False)
    assert set(ROWS[by_rng]) == set(ROWS[holdout_mask(ROWS, 0.2, seed=11, draw="choice")])
    assert rng.integers(1 << 30) == ref.integers(1 << 30)


def test_fraction_out_of_range_and_unknown_draw_are_refused():
    with pytest.raises(DataError, match="must be in"):
        holdout_mask(ROWS, 1.0)
    with pytest.raises(DataError, match="must be in"):
        holdout_mask(ROWS, -0.1)
    with pytest.raises(ValueError, match="draw"):
        holdout_mask(ROWS, 0.1, draw="alphabetical")


def test_hold_out_genes_splits_a_dataset_by_the_mask():
    n = len(ROWS)
    data = HistoneDataset(
        np.zeros((n, 5, 10), np.float32), np.arange(n, dtype=np.float32), np.full(n, "E003"), ROWS
    )
    train, valid = hold_out_genes(data, 0.25, seed=1)
    held = holdout_mask(ROWS, 0.25, seed=1)
    np.testing.assert_array_equal(valid.y, data.y[held])
    np.testing.assert_array_equal(train.y, data.y[~held])
