import csv

import pytest

from nvmsim.report.export import export, flat_rows


def test_csv_states_percent_in_the_header(rows, tmp_path):
    path = export(rows, tmp_path / "runs.csv")
    with path.open() as fh:
        lines = list(csv.DictReader(fh))
    assert len(lines) == 6
    first = lines[0]
    assert {
        "run_id",
        "axis.sigma_syn",
        "accuracy_pct",
        "accuracy_std_pct",
        "seed",
        "seconds",
    } <= set(first)
    assert "accuracy" not in first and "accuracy_all" not in first  # lists stay in the store
    assert float(first["accuracy_pct"]) == pytest.approx(90.0)
    assert float(first["software_accuracy_pct"]) == pytest.approx(91.0)
    assert [p.name for p in tmp_path.iterdir()] == ["runs.csv"]  # no temporary file left


def test_unknown_format_is_refused_and_writes_nothing(rows, tmp_path):
    with pytest.raises(ValueError, match=r"runs\.xlsx: export format must be \.csv or \.parquet"):
        export(rows, tmp_path / "runs.xlsx")
    assert not list(tmp_path.iterdir())


def test_parquet_round_trip(rows, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(export(rows, tmp_path / "runs.parquet")).to_pylist()
    assert table == flat_rows(rows)
