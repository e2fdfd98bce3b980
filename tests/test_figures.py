"""The charts: every chart renders from the files evaluate writes, and the model folder's plots."""

from __future__ import annotations

import pytest

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
