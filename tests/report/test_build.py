import re
import shutil
import subprocess

import pytest

from nvmsim.report.build import ci95, markdown_table, write_report


def _rows():
    rows = []
    for te in (0.0, 0.1):
        for syn in (0.0, 0.1, 0.2):
            acc = 0.9 - syn - te
            metrics = {"accuracy": acc, "accuracy_std": 0.01, "repeats": 10}
            rows.append({"axes": {"sigma_syn": syn, "sigma_te": te}, "metrics": metrics})
    return rows


def test_ci95_matches_the_t_interval():
    assert ci95(1.0, 10) == pytest.approx(2.262157 / 10**0.5, rel=1e-5)
    assert ci95(1.0, 1) == 0.0


def test_markdown_table_lists_every_run():
    text = markdown_table(_rows())
    assert text.count("\n") == 2 + 6
    assert "| 0.1 | 0.1 | 70.00 | 1.00 | 0.72 | 10 |" in text


def test_html_report_renders_in_headless_chromium(tmp_path):
    paths = write_report(_rows(), tmp_path / "out", "test study", "a description")
    assert paths["figure"].stat().st_size > 10_000
    html = paths["html"].read_text()
    assert "data:image/png;base64," in html and html.count("<tr>") == 1 + 6
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian package 'chromium'); HTML not rendered")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
    ]  # fmt: skip
    url = paths["html"].resolve().as_uri()
    shot = tmp_path / "out" / "screenshot.png"
    res = subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1000,1400", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot.is_file() and shot.stat().st_size > 10_000, res.stderr[-2000:]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    )
    width = re.search(r'data-figure-width="(\d+)"', dom.stdout)
    assert width and int(width.group(1)) > 100, dom.stdout[:500]
    console_errors = [
        line for line in (res.stderr + dom.stderr).splitlines()
        if "CONSOLE" in line and ("Uncaught" in line or "ERROR" in line.upper().split("CONSOLE")[0])
    ]  # fmt: skip
    assert not console_errors, console_errors


def test_figure_panels_lines_and_x_axis():
    from nvmsim.report.build import build_figure

    rows = []
    for model in ("cnn", "rnn"):
        for r in _rows():
            rows.append({**r, "axes": {**r["axes"], "model": model}})
    fig = build_figure(rows, "t", panels=["model"])
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert [ax.get_title() for ax in visible] == ["model=cnn", "model=rnn"]
    for ax in visible:
        assert ax.get_xlabel() == "sigma_syn"
        labels = [line.get_label() for line in ax.get_lines()]
        assert labels == ["sigma_te=0", "sigma_te=0.1"]
        ys = ax.get_lines()[1].get_ydata()  # accuracy 0.9 - syn - 0.1, in percent
        assert list(ys) == pytest.approx([80.0, 70.0, 60.0])
    fig = build_figure(rows, "t", x="sigma_te")
    (ax,) = fig.axes
    assert ax.get_xlabel() == "sigma_te" and len(ax.get_lines()) == 6


def test_report_axes_must_be_swept(tmp_path):
    from nvmsim.config import ConfigError
    from nvmsim.studies.schema import load_study

    path = tmp_path / "s.toml"
    path.write_text(
        'name = "s"\n[models.m]\narch = "mlp"\n[sweep]\nsigma_syn = [0.0, 0.1]\n'
        '[report]\npanels = ["dataset"]\n'
    )
    with pytest.raises(ConfigError, match="'dataset' is not a swept axis"):
        load_study(path)


def test_pooled_table_summarises_runs_over_the_pooled_axis(tmp_path):
    from nvmsim.report.build import pooled

    rows = [
        {"axes": {"model": m, "train.seed": s}, "metrics": {"accuracy": a, "accuracy_std": 0.01}}
        for m, accs in (("a", (0.80, 0.90, 0.70)), ("b", (0.50, 0.50, 0.50)))
        for s, a in enumerate(accs)
    ]  # fmt: skip
    head, body = pooled(rows, ["train.seed"])
    assert head[0] == "model" and "train.seed" not in head
    assert body == [
        ["a", "80.00", "10.00", "70.00", "90.00", "3"],
        ["b", "50.00", "0.00", "50.00", "50.00", "3"],
    ]
    for r in rows:
        r["metrics"]["repeats"] = 10
    paths = write_report(rows, tmp_path, "seeds", x="train.seed", pool=["train.seed"])
    assert "## accuracy, pooled over train.seed" in paths["markdown"].read_text()
    assert "| a | 80.00 | 10.00 | 70.00 | 90.00 | 3 |" in paths["markdown"].read_text()
    assert paths["html"].read_text().count('<table class="pooled">') == 1

    from nvmsim.report.build import build_figure

    (ax,) = build_figure(rows, "seeds", x="train.seed").axes
    ticks = [t for t in ax.get_xticks() if 0 <= t <= 2]
    assert ticks == [0, 1, 2]  # an integer axis gets integer ticks
