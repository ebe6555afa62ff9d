"""Silent wrong numbers (issue #24): each class refused in one line, or named for what it is.

- the model contract (marks, bins, bin size, window, target type) is checked by
  predict, evaluate and explain alike;
- every output names its prediction column by what the model predicts;
- mark names have one spelling (case-insensitive), typos are refused with "did you mean";
- ``featurize --expression`` refuses genes the table lacks unless ``--missing drop``;
- every kind states its minimum number of training genes and refuses below it.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from conftest import FAST, make_planted
from histexpr.cli import main
from histexpr.data.dataset import TARGET_PASSTHROUGH
from histexpr.data.hdf5 import read_h5, write_h5
from histexpr.errors import HistexprError
from histexpr.evaluate import median_split_labels


def cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            return int(exc.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err


def windowed(data, upstream: int, n_bins: int = 80):
    """``data`` cut to ``n_bins`` bins and recorded as a window starting ``upstream`` bp."""
    window = {"upstream": upstream, "downstream": n_bins * 100 - upstream, "n_bins": n_bins}
    return replace(data, X=data.X[:, :, :n_bins], meta={**data.meta, "window": window})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A ridge and a convnet classifier trained at +/-4 kb in 80 bins of 100 bp."""
    tmp = tmp_path_factory.mktemp("numbers")
    data = windowed(make_planted(80, cells=("E003", "E004")), 4000)
    train = write_h5(data, tmp / "train.h5")
    assert cli("train", train, "--model", "ridge", "-o", tmp / "ridge")[0] == 0
    sets = [f"--set={k}={v}" for k, v in {**FAST, "epochs": 2, "task": "classification"}.items()]
    code, _, err = cli("train", train, "--model", "convnet", *sets, "-o", tmp / "clf")
    assert code == 0, err
    return tmp, data


# --- the contract: window ----------------------------------------------------------


@pytest.mark.parametrize("command", ["predict", "evaluate", "explain"])
def test_a_shifted_window_is_refused_by_predict_evaluate_and_explain(command, models):
    tmp, _ = models
    shifted = write_h5(windowed(make_planted(80, cells=("E003", "E004")), 3000), tmp / "w.h5")
    out = tmp / f"{command}-window.csv"
    if command == "explain":
        # explain needs a network: the classifier has the same contract
        args = ("explain", tmp / "clf", "--data", shifted, "-o", tmp / "explain-window")
    else:
        args = (command, tmp / "ridge", shifted, "-o", out)
    code, _, err = cli(*args)
    one_line_error(code, err, "-3000/+5000 bp in 80 bins", "-4000/+4000 bp in 80 bins")
    assert not out.exists()
    if command == "predict":  # the training window itself predicts
        code, _, err = cli("predict", tmp / "ridge", tmp / "train.h5", "-o", out)
        assert code == 0, err
    if command != "explain":  # --pair goes through the same check, naming the file
        pair_out = tmp / f"{command}-pair-window.csv"
        code, _, err = cli(command, tmp / "ridge", shifted, "--pair", "E003:E004", "-o", pair_out)
        one_line_error(code, err, str(shifted), "-3000/+5000 bp in 80 bins")


def test_the_model_records_its_window(models):
    from histexpr.estimators.bundle import read_header

    assert read_header(models[0] / "ridge").upstream == 4000


# --- the contract: target type -----------------------------------------------------


def test_a_regression_model_is_not_scored_on_labels(models):
    tmp, data = models
    labels = median_split_labels(data.y, data.cell).astype(np.float32)
    # the file does not say its target is labels ("as-given"): the values do
    path = write_h5(replace(data, y=labels, target=TARGET_PASSTHROUGH), tmp / "labels.h5")
    out = tmp / "labels-eval.csv"
    code, _, err = cli("evaluate", tmp / "ridge", path, "-o", out)
    one_line_error(code, err, "0/1 labels", "regression")
    assert not out.exists()


def test_a_classifier_on_expression_is_scored_by_auc_only_and_says_so(models):
    tmp, _ = models
    out = tmp / "clf-eval.csv"
    code, _, err = cli("evaluate", tmp / "clf", tmp / "train.h5", "-o", out)
    assert code == 0, err
    table = pd.read_csv(out)
    assert table["auc"].notna().all()
    assert table[["mse", "pearson", "spearman", "r2"]].isna().all().all()
    assert "classifier" in err and "auc" in err


# --- outputs name what they hold ---------------------------------------------------


def test_a_classifier_submission_names_its_probabilities(models):
    tmp, _ = models
    out = tmp / "clf-sub.csv"
    code, _, err = cli(
        "predict", tmp / "clf", tmp / "train.h5", "--format", "submission", "-o", out
    )
    assert code == 0, err
    table = pd.read_csv(out)
    assert list(table.columns) == ["id", "probability_high"]
    assert table["probability_high"].between(0, 1).all()


def test_a_classifier_pair_is_not_a_log_fold_change(models):
    tmp, _ = models
    out = tmp / "clf-pair.csv"
    code, _, err = cli("predict", tmp / "clf", tmp / "train.h5", "--pair", "E003:E004", "-o", out)
    assert code == 0, err
    columns = list(pd.read_csv(out).columns)
    assert "predicted_lfc" not in columns and "probability_high_difference" in columns
    code, _, err = cli("evaluate", tmp / "clf", tmp / "train.h5", "--pair", "E003:E004")
    one_line_error(code, err, "classifier")
    # a regression model's difference is a log fold change
    out = tmp / "ridge-pair.csv"
    assert cli("predict", tmp / "ridge", tmp / "train.h5", "--pair", "E003:E004", "-o", out)[0] == 0
    assert "predicted_lfc" in pd.read_csv(out).columns


# --- one spelling of mark names ------------------------------------------------------


def test_mark_names_are_matched_case_insensitively_or_refused():
    from histexpr.data.dataset import check_mark_names, mark_name

    assert mark_name("H3k4me3") == "H3K4me3"
    assert mark_name("dnase") == "DNase"
    assert mark_name("h3k27AC") == "H3K27ac"
    assert mark_name("MYB") == "MYB"  # a custom track keeps its name
    with pytest.raises(HistexprError, match="did you mean H3K4me3"):
        mark_name("H3K4m3")
    with pytest.raises(HistexprError, match="duplicated"):
        check_mark_names(["H3K4me3", "h3k4me3"])


def test_a_manifest_typo_is_the_known_mark_not_a_sixth(tmp_path):
    from histexpr.featurize.pipeline import file_marks, read_manifest

    rows = [("E003", m, f"{m}.bw") for m in ("H3K27me3", "H3K36me3", "H3K4me1", "H3k4me3")]
    pd.DataFrame(rows, columns=["cell", "mark", "path"]).to_csv(
        tmp_path / "m.tsv", sep="\t", index=False
    )
    tracks = read_manifest(tmp_path / "m.tsv")
    assert "H3K4me3" in tracks["E003"] and "H3k4me3" not in tracks["E003"]
    assert len(file_marks(tracks)) == 5


def test_featurize_refuses_a_mark_typo(tmp_path):
    code, _, err = cli(
        "featurize", "--cell", "E003", "--mark", f"H3K4m3={tmp_path / 'x.bw'}",
        "--fill-missing", "-o", tmp_path / "f.h5",
    )  # fmt: skip
    one_line_error(code, err, "did you mean H3K4me3")


def test_download_marks_are_validated(tmp_path):
    code, _, err = cli(
        "download", "roadmap-tagalign", "--cells", "E003", "--marks", "H3K4me3,H3K27m3",
        "--dry-run", "--dest", tmp_path,
    )  # fmt: skip
    one_line_error(code, err, "did you mean H3K27me3")
    code, out, err = cli(
        "download", "roadmap-tagalign", "--cells", "E003", "--marks", "h3k4me3",
        "--dry-run", "--dest", tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert "E003-H3K4me3.tagAl" in out.replace("\n", "")


def test_simulate_marks_are_normalised(tmp_path):
    out = tmp_path / "s.h5"
    code, _, err = cli(
        "simulate", "-o", out, "--n-genes", "20", "--cells", "E003",
        "--marks", "h3k27me3,h3k36me3,h3k4me1,h3k4me3,h3k9me3,h3k27AC", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "H3K27ac" in read_h5(out).marks


# --- minimum training size per kind ----------------------------------------------------


@pytest.mark.parametrize("kind", ["ridge", "lightgbm", "convnet"])
def test_too_few_genes_are_refused_in_one_line(kind, tmp_path):
    from histexpr.estimators import min_genes

    need = min_genes(kind)
    data = write_h5(make_planted(1, cells=("E003",)), tmp_path / "one.h5")
    out = tmp_path / "m"
    code, _, err = cli("train", data, "--model", kind, "-o", out)
    one_line_error(code, err, f"{kind} needs at least {need}", "1 gene(s)")
    assert not out.exists()


@pytest.mark.parametrize("kind", ["ridge", "lightgbm", "convnet", "diff-ridge", "atlas-convnet"])
def test_every_kind_states_its_minimum(kind):
    from histexpr.estimators import min_genes

    assert min_genes(kind) > 1
    code, out, err = cli("train", "--model", kind, "--show-settings")
    assert code == 0, err
    assert f"at least {min_genes(kind)} distinct genes" in " ".join(out.split())


# --- errors name the file, the gene and the mark ----------------------------------------


def test_a_bad_strand_names_the_file_and_the_gene_not_a_repr(tmp_path):
    from histexpr.featurize.annotation import read_tss

    path = tmp_path / "tss.tsv"
    table = {"chrom": ["chr1", "chr1"], "tss": [1000, 5000], "strand": ["+", "."]}
    pd.DataFrame({**table, "gene_id": ["ENSG1", "ENSG2"]}).to_csv(path, sep="\t", index=False)
    with pytest.raises(HistexprError) as exc:
        read_tss(path)
    msg = str(exc.value)
    assert str(path) in msg and "got '.'" in msg and "ENSG00000000002" in msg
    assert "np.str_" not in msg


def test_a_bad_count_names_its_mark(tmp_path):
    data = make_planted(10, cells=("E003",))
    data.X[2, 3, 10] = -1.0
    from histexpr.data.validate import validate_dataset

    with pytest.raises(HistexprError, match=r"mark 3, bin 10 \(H3K4me3\)"):
        validate_dataset(data, tmp_path / "d.h5", marks=None, n_bins=None)


# --- info recognises a model directory and shows what data record --------------------


def test_info_shows_a_model_directory_contract(models):
    tmp, _ = models
    code, out, err = cli("info", tmp / "ridge")
    assert code == 0, err
    flat = " ".join(out.split())
    assert "model: ridge (regression)" in flat and "-4000/+4000 bp in 80 bins" in flat
    assert "E003, E004" in flat


def test_info_shows_the_window_and_recorded_unseen_cells(models, tmp_path):
    tmp, _ = models
    code, out, err = cli("info", tmp / "train.h5")
    assert code == 0, err
    assert "-4000/+4000 bp in 80 bins" in " ".join(out.split())
    sim = tmp_path / "s.h5"
    args = ("--n-genes", "10", "--cells", "E003,E004", "--unseen", "E004", "--no-progress")
    assert cli("simulate", "-o", sim, *args)[0] == 0
    code, out, err = cli("info", sim)
    assert code == 0, err
    assert "unseen cell types" in out and "E004" in out.split("unseen cell types")[1]


# --- npz keys, gene ids of one type, pair scores split by gene -----------------------


def test_an_unnamed_npz_array_is_not_a_cell_id(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, np.zeros((3, 100, 7), np.float32))  # numpy names it arr_0
    code, _, err = cli("info", path)
    one_line_error(code, err, "arr_0", "not a cell-type id")


def test_pair_output_gene_ids_are_those_of_the_tidy_output(models, tmp_path):
    from histexpr.data.npz import write_npz

    _, data = models
    course = tmp_path / "c.npz"
    write_npz(replace(data, X=np.pad(data.X, ((0, 0), (0, 0), (0, 20)))), course)
    # the model's window is 80 bins; a 100-bin course file is another contract: use gene-mean
    assert cli("train", course, "--model", "gene-mean", "-o", tmp_path / "gm")[0] == 0
    tidy, pair = tmp_path / "t.csv", tmp_path / "p.csv"
    assert cli("predict", tmp_path / "gm", course, "-o", tidy)[0] == 0
    assert cli("predict", tmp_path / "gm", course, "--pair", "E003:E004", "-o", pair)[0] == 0
    tidy_genes = set(pd.read_csv(tidy, dtype=str)["gene"])
    pair_genes = set(pd.read_csv(pair, dtype=str)["gene"])
    assert pair_genes == tidy_genes


def test_evaluate_pair_scores_training_genes_apart(models):
    tmp, _ = models
    out = tmp / "pair-scores.csv"
    code, stdout, err = cli("evaluate", tmp / "ridge", tmp / "train.h5", "--pair", "E003:E004",
                            "-o", out)  # fmt: skip
    assert code == 0, err
    scores = pd.read_csv(out).set_index("genes")
    # the ridge held out 10% of the 80 genes for validation: those are new, the rest train
    assert set(scores.index) == {"new", "train"}
    assert scores.loc["new", "n"] + scores.loc["train", "n"] == 80
    assert 0 < scores.loc["new", "n"] < scores.loc["train", "n"]
    assert "scored apart" in " ".join(stdout.split())


@pytest.mark.parametrize("edit", [{"kind": "nope"}, {"config": {"alpha": 1.0, "zzz": 1}}])
def test_a_bad_model_json_names_its_file(edit, models, tmp_path):
    import json
    import shutil

    tmp, _ = models
    model = tmp_path / "m"
    shutil.copytree(tmp / "ridge", model)
    header = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**header, **edit}))
    code, _, err = cli("predict", model, tmp / "train.h5", "-o", tmp_path / "p.csv")
    one_line_error(code, err, str(model / "model.json"))


def test_an_experiment_scores_a_classifier_by_auc_only(tmp_path):
    from histexpr.workflows.experiment import ExperimentConfig, run_experiment

    data = make_planted(60, cells=("E003", "E004", "E005"))
    neural = tuple(f"{k}={v}" for k, v in {**FAST, "epochs": 2, "task": "classification"}.items())
    cfg = ExperimentConfig(models=("ridge", "convnet"), unseen_cells=("E005",), neural=neural)
    result = run_experiment(data, tmp_path / "run", cfg, log=lambda s: None)
    table = result.evaluation.table.set_index("model")
    assert table.loc["convnet", ["mse", "pearson", "r2"]].isna().all().all()
    assert table.loc["convnet", "auc"].notna().all()
    assert table.loc["ridge", ["mse", "r2", "auc"]].notna().all().all()
    assert any("convnet is a classifier" in n for n in result.evaluation.notes)
