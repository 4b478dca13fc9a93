import pytest

from nvmsim.report.tables import baseline_table, ci95, pooled, runs_table
from tests.report.conftest import make_rows


def test_ci95_matches_the_t_interval():
    assert ci95(1.0, 10) == pytest.approx(2.262157 / 10**0.5, rel=1e-5)
    assert ci95(1.0, 1) == 0.0


def test_runs_table_has_labelled_headers_percent_and_the_baseline(rows):
    head, body = runs_table(rows)
    assert head[:2] == ["read noise sigma (x Gmax)", "test-input noise sigma (x pixel range)"]
    assert head[-1] == "software (digital) accuracy (%)"
    assert len(body) == 6
    assert ["0.1", "0.1", "70.00", "1.00", "0.72", "10", "91.00"] in body


def test_baseline_table_gives_software_beside_the_analog_range():
    head, body = baseline_table(make_rows(models=("cnn", "mlp")))
    assert head[:2] == ["model", "software (digital) accuracy (%)"]
    assert body == [
        ["cnn", "91.00", "60.00", "90.00", "6"],
        ["mlp", "91.00", "60.00", "90.00", "6"],
    ]
    rows = make_rows()
    del rows[0]["metrics"]["software_accuracy"]
    assert baseline_table(rows) is None


def test_pooled_table_summarises_runs_over_the_pooled_axis():
    rows = [
        {"axes": {"model": m, "train.seed": s}, "metrics": {"accuracy": a, "accuracy_std": 0.01}}
        for m, accs in (("a", (0.80, 0.90, 0.70)), ("b", (0.50, 0.50, 0.50)))
        for s, a in enumerate(accs)
    ]  # fmt: skip
    head, body = pooled(rows, ["train.seed"])
    assert head[0] == "model" and "training seed" not in head
    assert body == [
        ["a", "80.00", "10.00", "70.00", "90.00", "3"],
        ["b", "50.00", "0.00", "50.00", "50.00", "3"],
    ]
