from nvmsim.report.provenance import provenance_table, utc


def test_provenance_lists_versions_seeds_store_dates_and_wall_times(rows, tmp_path):
    head, body = provenance_table(rows, tmp_path / "r.sqlite", now=0.0)
    table = dict(body)
    assert table["nvmsim (runs)"] == "0.1.0" and table["commit (runs)"] == "abc123"
    assert table["study seed"] == "7"
    assert table["result store"] == str((tmp_path / "r.sqlite").resolve())
    assert table["runs ran"] == f"{utc(1_796_000_000.0)} to {utc(1_796_000_300.0)}"
    assert table["wall time per run (evaluation; models train once, cached)"] == (
        "min 1.5 s, median 4 s, max 6.5 s")  # fmt: skip
    assert table["wall time, all runs"] == "24 s over 6 runs"
    assert table["report date"] == "1970-01-01 00:00:00 UTC"
    assert table["report by"].startswith("nvmsim ")


def test_bare_rows_give_only_the_report_lines():
    _, body = provenance_table([{"axes": {}, "metrics": {}}])
    assert [k for k, _ in body] == ["report by", "report date"]
