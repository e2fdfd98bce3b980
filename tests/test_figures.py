"""The charts: every chart renders from the files evaluate writes, and the model folder's plots."""

from __future__ import annotations

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from medapp.reporting import dashboard, figures
from tests.app_fixtures import fake_metrics, shipped_model_dirs, write_fake_model_files


def test_every_chart_renders_from_files(tmp_path):
    model_dir = write_fake_model_files(tmp_path / "m")
    metrics, history = dashboard.load_metrics(model_dir), dashboard.load_history(model_dir)
    charts = figures.render_charts(metrics, history)
    assert list(charts) == list(figures.CHARTS)
    assert all(png.startswith(b"\x89PNG") and len(png) > 5000 for png in charts.values())


def test_missing_files_give_none_and_fewer_charts(tmp_path):
    assert dashboard.load_metrics(tmp_path) is None and dashboard.load_history(tmp_path) is None
    m = fake_metrics()
    del m["localization"]
    assert figures.available_charts(m, None) == ["roc", "pr", "confusion", "reliability"]
    with pytest.raises(ValueError, match="choose one of"):
        figures.chart_figure("pie", m, None)


@pytest.mark.parametrize("model_dir", shipped_model_dirs() or [None])
def test_shipped_metrics_render(model_dir):
    if model_dir is None or dashboard.load_metrics(model_dir) is None:
        pytest.skip("no shipped model with metrics.json under models/ yet")
    metrics = dashboard.load_metrics(model_dir)
    charts = figures.render_charts(metrics, dashboard.load_history(model_dir))
    assert {"roc", "pr", "confusion", "reliability"} <= set(charts)
    op = dashboard.operating_point_at(metrics, metrics["threshold"])
    for key in ("sensitivity", "specificity", "ppv", "npv"):
        assert getattr(op, key) == pytest.approx(metrics[key])


def test_write_plots_names_files_by_dataset_and_split(tmp_path):
    paths = figures.write_plots(fake_metrics(), tmp_path, prefix="busi_val")
    assert sorted(p.name for p in paths) == ["busi_val_confusion.png", "busi_val_pr.png", "busi_val_reliability.png",
                                            "busi_val_roc.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)


def _outside(inner, outer) -> bool:
    """True when two display-space boxes do not overlap."""
    return inner.x1 <= outer.x0 or inner.x0 >= outer.x1 or inner.y1 <= outer.y0 or inner.y0 >= outer.y1


def test_reliability_uses_equal_count_bins_with_counts_and_a_legend_off_the_data():
    m = fake_metrics()  # 156 images with per-image predictions
    fig = figures.reliability_figure(m)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    ax, strip = fig.axes
    (points,) = ax.containers  # one errorbar series: observed rate with its 95% interval
    xs = points.lines[0].get_xdata()
    assert len(xs) == figures.reliability_bin_count(156) == 7
    assert "7 bins of 22-23 images" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    counts = [int(t.get_text()) for t in strip.texts]  # every non-empty bar carries its count
    assert sum(counts) == 156
    renderer = canvas.get_renderer()
    assert _outside(ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer))


def test_reliability_without_predictions_marks_tiny_stored_bins():
    m = fake_metrics()
    del m["predictions"]
    rel = m["curves"]["reliability"]["calibrated"]
    fig = figures.reliability_figure(m)
    ax, strip = fig.axes
    solid, hollow = ax.lines[0], ax.lines[1]
    small = [c < figures.SMALL_BIN for c in rel["count"]]
    assert len(hollow.get_xdata()) == sum(small) and len(solid.get_xdata()) == len(small) - sum(small)
    assert hollow.get_markerfacecolor() == "none"
    assert sorted(int(t.get_text()) for t in strip.texts) == sorted(rel["count"])


@pytest.mark.parametrize(("n", "bins"), [(5, 1), (40, 2), (156, 7), (304, 10), (5000, 10)])
def test_reliability_bin_count_keeps_twenty_images_per_bin(n, bins):
    assert figures.reliability_bin_count(n) == bins


def test_training_losses_never_share_an_axis():
    history = {"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.5], "train_lesion_loss": [1.0, 0.6, 0.5],
               "val_loss": [0.7, 0.5, 0.45], "val_auc": [0.8, 0.9, 0.92], "val_auc_busi": [0.9, 0.95, 0.97],
               "val_auc_busbra": [0.7, 0.8, 0.85], "val_accuracy_3class": [0.7, 0.8, 0.82]}
    fig = figures.training_figure(history)
    labels = [[line.get_label() for line in ax.lines] for ax in fig.axes]
    assert labels == [["total", "lesion-mask term"], ["unaugmented"],
                      ["AUC, all sites", "AUC, busi", "AUC, busbra", "3-class accuracy"]]
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["Training objective", "Validation cross-entropy",
                                                              "Validation scores"]
