"""Figures: every plot function draws on a given Axes or a new one and labels what it shows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from histexpr import plot
from histexpr.data.dataset import MARKS, HistoneDataset

RNG = np.random.default_rng(0)


def _ax():
    return Figure().add_subplot()


def _image(ax):
    (image,) = ax.get_images()
    return image


def test_input_heatmap_axes_marks_and_kb_extent():
    values = RNG.random((5, 100))
    ax = plot.plot_input_heatmap(values, title="E003")
    assert isinstance(ax, Axes) and ax.get_title() == "E003"
    assert [t.get_text() for t in ax.get_yticklabels()] == list(MARKS)
    left, right, _, _ = _image(ax).get_extent()
    assert (left, right) == (-5.0, 5.0)
    assert "kb" in ax.get_xlabel()
    given = _ax()
    assert plot.plot_input_heatmap(values, ax=given) is given


def test_signed_attribution_heatmap_is_centred_at_zero():
    values = RNG.normal(0.3, 1.0, (5, 100))
    norm = _image(plot.plot_attribution_heatmap(values, signed=True)).norm
    assert norm.vmin == pytest.approx(-norm.vmax)
    assert norm.vmax == pytest.approx(np.abs(values).max())
    assert _image(plot.plot_attribution_heatmap(values, signed=True)).get_cmap().name == "RdBu_r"
    unsigned = _image(plot.plot_attribution_heatmap(np.abs(values), signed=False))
    assert unsigned.get_cmap().name != "RdBu_r" and unsigned.norm.vmin == 0.0
    zeros = _image(plot.plot_attribution_heatmap(np.zeros((5, 100)))).norm
    assert zeros.vmax > 0  # an all-zero map still gets a valid colour scale
    with pytest.raises(ValueError, match="expected"):
        plot.plot_attribution_heatmap(np.zeros((4, 100)))


def test_expression_histogram_one_outline_per_cell_and_counts_preserved():
    values = {"E003": RNG.normal(3, 1, 200), "E071": RNG.normal(5, 1, 300)}
    ax = plot.plot_expression_histogram(values)
    patches = ax.patches
    assert len(patches) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["E003", "E071"]
    pre = plot.Histogram(np.array([1, 4, 2]), np.array([0.0, 1.0, 2.0, 3.0]))
    ax = plot.plot_expression_histogram({"E005": pre}, ax=_ax())
    assert len(ax.patches) == 1 and ax.get_legend() is None


def test_loss_curves_one_line_per_member_and_split():
    rows = [
        {"member": m, "epoch": e, "split": s, "loss": 1.0 / (e + 1) + m}
        for m in range(3)
        for s in ("train", "valid", "trainval")
        for e in range(4)
    ]
    ax = plot.plot_loss_curves(pd.DataFrame(rows))
    assert len(ax.get_lines()) == 9
    styles = {line.get_linestyle() for line in ax.get_lines()}
    assert styles == {"-", "--", ":"}
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["train", "valid", "trainval"] and "member 2" in labels
    with pytest.raises(ValueError, match="member"):
        plot.plot_loss_curves(pd.DataFrame({"epoch": [0], "loss": [1.0]}))


def test_pred_vs_obs_shows_metrics_and_subsamples_points():
    y = RNG.normal(size=20000)
    yhat = y + RNG.normal(scale=0.5, size=y.size)
    ax = plot.plot_pred_vs_obs(y, yhat, max_points=1000, title="seen")
    (points,) = ax.collections
    assert len(points.get_offsets()) == 1000
    text = ax.texts[0].get_text()
    assert "pearson = 0.89" in text and "n = 20000" in text
    ax = plot.plot_pred_vs_obs(y[:10], yhat[:10], ax=_ax(), metrics={"pearson": 0.5, "auc": np.nan})
    assert ax.texts[0].get_text() == "pearson = 0.500"


def test_composite_figures_render_to_png(tmp_path):
    ds = HistoneDataset(
        RNG.poisson(2, (6, 5, 100)).astype(np.float32), None, ["A"] * 3 + ["B"] * 3, list("abcabc")
    )
    means = plot.cell_mean_signal(ds, ["A", "B"])
    np.testing.assert_allclose(means["B"], ds.X[3:].mean(0), rtol=1e-6)
    figs = [
        plot.input_heatmaps_figure(means),
        plot.attribution_figure(["A", "B"], RNG.normal(size=(2, 5, 100)), RNG.random((2, 5, 100))),
        plot.pred_vs_obs_figure(
            {"seen": (np.arange(5.0), np.arange(5.0)), "unseen": ([1, 2], [2, 1])}
        ),
    ]
    assert len(figs[1].axes) == 2 * 2 + 4  # four maps, each with a colour bar
    for i, fig in enumerate(figs):
        png = plot.save_figure(fig, tmp_path / f"f{i}.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f0.png", "f1.png", "f2.png"]


def test_heatmaps_take_any_marks_and_window():
    marks = (*MARKS, "H3K27ac", "DNase")
    ax = plot.plot_input_heatmap(RNG.random((7, 40)), marks, bin_size=50)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(marks)
    # 40 bins of 50 bp: TSS +/- 1 kb.
    assert _image(ax).get_extent()[:2] == [-1.0, 1.0]
    with pytest.raises(ValueError, match=r"\(7, n_bins\)"):
        plot.heatmap(RNG.random((5, 40)), marks)
    signal = {"E003": RNG.random((7, 200)), "E004": RNG.random((7, 200))}
    tall = plot.input_heatmaps_figure(signal, marks)
    short = plot.input_heatmaps_figure({k: v[:2] for k, v in signal.items()}, marks[:2])
    assert tall.get_size_inches()[1] > short.get_size_inches()[1]  # room for every row label


def test_model_scores_highlight_the_best_and_mark_the_reference():
    scores = {"convnet": 1.2, "ridge": 1.9, "global-mean": float("nan")}
    ax = plot.plot_model_scores(scores, best="convnet", reference=1.0, xlabel="MSE / oracle")
    bars = ax.patches
    assert len(bars) == 3 and bars[0].get_facecolor() != bars[1].get_facecolor()
    assert [t.get_text() for t in ax.get_yticklabels()] == list(scores)  # first on top
    assert ax.yaxis_inverted()
    weights = {t.get_text(): t.get_fontweight() for t in ax.get_yticklabels()}
    assert weights["convnet"] == "bold" and weights["ridge"] == "normal"
    texts = [t.get_text() for t in ax.texts]
    assert " 1.2" in texts and " n/a" in texts and "oracle" in texts
    assert [line.get_xdata()[0] for line in ax.get_lines()] == [1.0]
    assert ax.get_xlabel() == "MSE / oracle" and ax.get_ylabel() == "model"


def test_model_comparison_figure_titles_and_labels_every_panel():
    panels = [({"a": 0.5, "b": 0.7}, "R²", "b", None), ({"a": 0.9, "b": 0.8}, "r", "a", 0.95)]
    fig = plot.model_comparison_figure(panels, title="Models on all")
    assert fig._suptitle.get_text() == "Models on all"
    assert [ax.get_xlabel() for ax in fig.axes] == ["R²", "r"]
    fig = plot.pred_vs_obs_figure({"seen": ([1.0, 2.0], [1.0, 3.0])}, model="ridge", unit="u")
    assert fig._suptitle.get_text() == "ridge: predicted vs observed expression"
    assert fig.axes[0].get_xlabel() == "observed expression (u)"
