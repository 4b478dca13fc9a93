import pytest

from nvmsim.report.export import export
from nvmsim.training.onchip_plot import _percent, plot_accuracy_panels, read_runs_csv


def test_panels_read_percent_columns_of_an_export_and_older_fractions(tmp_path):
    rows = [
        {"run_id": f"r{i}", "axes": {"scenario.onchip.asymmetry": a},
         "metrics": {"accuracy": 0.9 - a / 10, "train_accuracy": 0.95 - a / 10}}
        for i, a in enumerate((0.0, 0.5, 1.0))
    ]  # fmt: skip
    runs = read_runs_csv(export(rows, tmp_path / "runs.csv"))
    assert [_percent(r, "accuracy") for r in runs] == pytest.approx([90.0, 85.0, 80.0])
    assert _percent({"accuracy": "0.5"}, "accuracy") == pytest.approx(50.0)
    panel = {"csv": tmp_path / "runs.csv", "x": "axis.scenario.onchip.asymmetry", "title": "t"}
    out = plot_accuracy_panels([panel], tmp_path / "fig.png")
    assert out.is_file() and out.stat().st_size > 5000
