"""The data-side holes of issue 12 through the command line: each would once pass silently."""

import gzip

import numpy as np
import pandas as pd
import pytest

from conftest import make_planted
from histexpr.cli import main
from histexpr.data.dataset import TARGET_PASSTHROUGH
from histexpr.data.deepchrome import TARGET_LABEL, write_deepchrome
from histexpr.data.h5writer import write_h5
from histexpr.data.npz import write_npz


def cli(*args) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    return err


def _course(n_genes=40, cells=("E003", "E004"), seed=0):
    ds = make_planted(n_genes=n_genes, cells=cells, seed=seed)
    ds.target = TARGET_PASSTHROUGH
    return ds


def _raw_npz(path, ds, zero_target_cells=()):
    """Course npz by hand: column 6 of ``zero_target_cells`` all zero."""
    arrays = {}
    for c in ds.cells:
        part = ds.subset(np.flatnonzero(ds.cell == c))
        a = np.zeros((len(part), ds.n_bins, 7), np.float32)
        a[:, :, 0] = np.array([int(g[4:]) for g in part.gene])[:, None]
        a[:, :, 1:6] = part.X.transpose(0, 2, 1)
        a[:, :, 6] = 0.0 if c in zero_target_cells else part.y[:, None]
        arrays[c] = a
    np.savez(path, **arrays)
    return path


# --------------------------------------------------------------------- convert auto


def test_convert_defaults_work_on_deepchrome_and_hdf5(tmp_path, capsys):
    lab = make_planted(n_genes=30, cells=("E003", "E004"))
    lab.y = (lab.y > np.median(lab.y)).astype(np.float32)
    lab.target = TARGET_LABEL
    write_deepchrome(lab, tmp_path / "dc")
    assert cli("convert", tmp_path / "dc", tmp_path / "dc.h5", "--no-progress") == 0
    write_h5(make_planted(n_genes=30), tmp_path / "in.h5")
    assert cli("convert", tmp_path / "in.h5", tmp_path / "out.h5", "--no-progress") == 0
    assert cli("convert", tmp_path / "in.h5", tmp_path / "noy.h5", "--target", "no") == 0
    capsys.readouterr()
    assert cli("info", tmp_path / "noy.h5") == 0
    assert "target: none" in capsys.readouterr().out


# --------------------------------------------------------------- npz target per key


def test_eval_named_npz_with_targets_trains(tmp_path, capsys):
    path = write_npz(_course(), tmp_path / "eval.npz")
    assert cli("train", path, "--model", "ridge", "-o", tmp_path / "m") == 0
    assert cli("train", path, "--model", "ridge", "-o", tmp_path / "m2", "--target", "no") == 2
    assert "no expression values" in one_line_error(capsys)


def test_npz_keys_that_disagree_are_an_error_and_info_shows_them(tmp_path, capsys):
    path = _raw_npz(tmp_path / "train.npz", _course(), zero_target_cells=("E003",))
    assert cli("train", path, "--model", "ridge", "-o", tmp_path / "m") == 2
    err = one_line_error(capsys)
    assert "keys disagree" in err and "E003" in err and "E004" in err
    assert cli("info", path) == 0
    out = capsys.readouterr().out
    assert "no (all zero)" in out and "yes" in out and "bins: 100 x 100" in out
    # Keeping the keys with targets trains.
    good = tmp_path / "good.h5"
    assert cli("convert", path, good, "--cells", "E004", "--no-progress") == 0
    assert cli("train", good, "--model", "ridge", "-o", tmp_path / "m") == 0


def test_npz_extra_key_is_skipped_with_a_notice(tmp_path, capsys):
    ds = _course()
    _raw_npz(tmp_path / "a.npz", ds)
    with np.load(tmp_path / "a.npz") as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(tmp_path / "b.npz", **arrays, genes=np.arange(5))
    with pytest.warns(UserWarning, match=r"\[genes\]: not a cell-type array"):
        assert cli("info", tmp_path / "b.npz") == 0


# ---------------------------------------------------------------------- gene identity


def test_gene_mean_trained_on_npz_scores_hdf5_genes(tmp_path, capsys):
    """938 (npz) and ENSG00000000938 (HDF5) are one gene: per-gene means, not the global one."""
    train = _course(n_genes=60)
    write_npz(train, tmp_path / "train.npz")
    test = make_planted(n_genes=60, cells=("E005",), seed=1)
    write_h5(test, tmp_path / "test.h5")
    model = tmp_path / "gm"
    assert cli("train", tmp_path / "train.npz", "--model", "gene-mean", "-o", model) == 0
    out = tmp_path / "pred.csv"
    assert cli("predict", model, tmp_path / "test.h5", "-o", out) == 0
    pred = pd.read_csv(out)
    value = next(c for c in pred.columns if c not in ("id", "cell", "gene"))
    assert pred[value].nunique() > 30  # the string mismatch gave one value for every gene


# ------------------------------------------------------------------ chromosome naming


def _tss_file(path, chroms):
    rows = [(c, 10_000 + 3_000 * i, "+", f"G{i}") for i, c in enumerate(chroms)]
    pd.DataFrame(rows, columns=["chrom", "tss", "strand", "gene_id"]).to_csv(
        path, sep="\t", index=False
    )
    return path


def _tagalign(path, chrom_names):
    rng = np.random.default_rng(0)
    with gzip.open(path, "wt") as fh:
        for i, c in enumerate(chrom_names):
            for s in np.sort(rng.integers(10_000 + 3_000 * i - 400, 10_000 + 3_000 * i + 400, 50)):
                fh.write(f"{c}\t{s}\t{s + 36}\tN\t1000\t+\n")
    return path


def _featurize_args(tmp_path, track, tss):
    marks = ["H3K27me3", "H3K36me3", "H3K4me1", "H3K4me3", "H3K9me3"]
    specs = [arg for m in marks for arg in ("--mark", f"{m}={track}")]
    return ["featurize", "-o", tmp_path / "f.h5", "--cell", "E003", "--tss", tss, *specs]


def test_featurize_matches_chr_prefixes_and_says_so(tmp_path, capsys, recwarn):
    track = _tagalign(tmp_path / "t.tagAlign.gz", ["1", "2", "MT"])
    tss = _tss_file(tmp_path / "tss.tsv", ["chr1", "chr2", "chrM"])
    args = [*_featurize_args(tmp_path, track, tss), "--upstream", "500", "--downstream", "500"]
    assert cli(*args, "--n-bins", "10", "--no-progress") == 0
    notes = [str(w.message) for w in recwarn]
    assert any("chromosome names matched" in n and "chr1 -> 1" in n for n in notes), notes
    from histexpr.data.hdf5 import read_h5

    ds = read_h5(tmp_path / "f.h5")
    assert (ds.X.sum(axis=(1, 2)) > 0).all()  # was all zero, exit 0


def test_featurize_without_common_chromosome_is_one_line(tmp_path, capsys):
    track = _tagalign(tmp_path / "t.tagAlign.gz", ["1", "2"])
    tss = _tss_file(tmp_path / "tss.tsv", ["scaffold_1", "scaffold_2"])
    args = [*_featurize_args(tmp_path, track, tss), "--no-progress"]
    assert cli(*args) == 2
    assert "no TSS lies on a chromosome of this track" in one_line_error(capsys)
    assert not (tmp_path / "f.h5").exists()


def test_predict_ignores_nan_in_the_expression_column(tmp_path, capsys):
    train = write_npz(_course(), tmp_path / "train.npz")
    assert cli("train", train, "--model", "ridge", "-o", tmp_path / "m") == 0
    ds = _course(seed=1)
    ds.y[3] = np.nan  # an unused column: predict must not care
    path = tmp_path / "eval.npz"
    with np.errstate(invalid="ignore"):
        _raw_npz(path, ds)
    assert cli("predict", tmp_path / "m", path, "-o", tmp_path / "p.csv") == 0
    genes = pd.read_csv(tmp_path / "p.csv", dtype=str)["gene"]
    assert genes.str.isdigit().all()  # course npz input keeps its integer ids in the output
    capsys.readouterr()
    assert cli("evaluate", tmp_path / "m", path) == 2  # evaluate does use it
    assert "NaN or infinite target" in one_line_error(capsys)
