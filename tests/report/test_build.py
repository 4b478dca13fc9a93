import re
import shutil
import subprocess

import pytest

from nvmsim.report.build import write_report
from tests.report.conftest import make_rows


def test_report_has_every_section_and_figure_format(rows, tmp_path):
    paths = write_report(
        rows, tmp_path / "out", "s", "Accuracy under read noise", store_path="r.db"
    )
    for key in ("figure", "figure_svg", "figure_pdf", "markdown", "html"):
        assert paths[key].is_file() and paths[key].stat().st_size > 1000, key
    md = paths["markdown"].read_text()
    assert md.startswith("# Accuracy under read noise\n")  # the description is the title
    for heading in ("## Software baseline", "## accuracy (%)", "## Setup", "## Provenance"):
        assert heading in md
    assert "| mlp | 91.00 | 60.00 | 90.00 | 6 |" in md  # software beside worst/best analog
    assert "[SVG](accuracy.svg)" in md and "95 % confidence interval" in md
    html = paths["html"].read_text()
    for ident in ("baseline", "accuracy", "setup", "provenance"):
        assert f'<section id="{ident}">' in html
    assert html.count('<table class="results">') == 1 and 'href="accuracy.pdf"' in html
    assert not [p for p in (tmp_path / "out").iterdir() if ".tmp" in p.name]


def test_pooled_tables_appear_in_both_renderings(tmp_path):
    rows = [
        {"axes": {"model": m, "train.seed": s},
         "metrics": {"accuracy": a, "accuracy_std": 0.01, "repeats": 10}}
        for m, accs in (("a", (0.80, 0.90, 0.70)), ("b", (0.50, 0.50, 0.50)))
        for s, a in enumerate(accs)
    ]  # fmt: skip
    paths = write_report(rows, tmp_path, "seeds", x="train.seed", pool=["train.seed"])
    md = paths["markdown"].read_text()
    assert "### accuracy, pooled over training seed" in md
    assert "| a | 80.00 | 10.00 | 70.00 | 90.00 | 3 |" in md
    assert paths["html"].read_text().count('<table class="pooled">') == 1
    assert "These runs store no software (digital) accuracy." in md


def test_html_report_renders_in_headless_chromium(tmp_path):
    paths = write_report(make_rows(), tmp_path / "out", "test study", "a description")
    html = paths["html"].read_text()
    assert "data:image/png;base64," in html
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
    for ident, heading in (("baseline", "Software baseline"), ("setup", "Setup"),
                           ("provenance", "Provenance")):  # fmt: skip
        assert re.search(rf'<section id="{ident}">\s*<h2>{heading}</h2>', dom.stdout), ident
    console_errors = [
        line for line in (res.stderr + dom.stderr).splitlines()
        if "CONSOLE" in line and ("Uncaught" in line or "ERROR" in line.upper().split("CONSOLE")[0])
    ]  # fmt: skip
    assert not console_errors, console_errors


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
