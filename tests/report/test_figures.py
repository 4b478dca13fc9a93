import pytest

from nvmsim.report.figures import band_caption, build_figure, save_figure
from nvmsim.report.labels import label, text
from tests.report.conftest import make_rows


def test_figure_labels_come_from_the_label_table(rows):
    fig = build_figure(rows, "A study description used as the title")
    (ax,) = fig.axes
    configs = [r["config"] for r in rows]
    assert ax.get_xlabel() == label("sigma_syn", configs) == "read noise sigma (x Gmax)"
    assert ax.get_ylabel() == label("accuracy") == "accuracy (%)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"{text('sigma_te')} = 0", f"{text('sigma_te')} = 0.1",
                      "software (digital) accuracy"]  # fmt: skip
    assert fig._suptitle.get_text() == "A study description used as the title"


def test_software_baseline_is_a_dashed_line_per_line(rows):
    (ax,) = build_figure(rows, "t").axes
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    solid = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    assert len(dashed) == 3 and len(solid) == 2  # one per line, and the legend's entry
    assert list(dashed[0].get_ydata()) == pytest.approx([91.0] * 3)
    assert list(solid[1].get_ydata()) == pytest.approx([80.0, 70.0, 60.0])  # te = 0.1


def test_panels_and_a_chosen_x_axis():
    rows = make_rows(models=("cnn", "rnn"))
    fig = build_figure(rows, "t", panels=["model"])
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert [ax.get_title() for ax in visible] == ["model = cnn", "model = rnn"]
    (ax,) = build_figure(rows, "t", x="sigma_te").axes
    assert ax.get_xlabel() == "test-input noise sigma (x pixel range)"
    assert len([ln for ln in ax.get_lines() if ln.get_linestyle() != "--"]) == 6
    assert len([ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]) == 6 + 1


def test_caption_says_what_the_band_is(rows):
    caption = band_caption(rows)
    assert "95 % confidence interval" in caption and "10 device instances" in caption
    assert "360 test images" in caption and "Dashed" in caption


def test_integer_axis_gets_integer_ticks():
    rows = [
        {"axes": {"train.seed": s}, "metrics": {"accuracy": a, "accuracy_std": 0.01, "repeats": 5}}
        for s, a in enumerate((0.8, 0.9, 0.7))
    ]  # fmt: skip
    (ax,) = build_figure(rows, "seeds", x="train.seed").axes
    assert ax.get_xlabel() == "training seed"
    assert [t for t in ax.get_xticks() if 0 <= t <= 2] == [0, 1, 2]


def test_saved_as_svg_pdf_and_a_300_dpi_png(rows, tmp_path):
    from PIL import Image

    paths = save_figure(build_figure(rows, "t"), tmp_path / "accuracy")
    assert sorted(paths) == ["pdf", "png", "svg"]
    assert paths["svg"].read_text().lstrip().startswith("<?xml")
    assert paths["pdf"].read_bytes().startswith(b"%PDF")
    with Image.open(paths["png"]) as im:
        assert im.info["dpi"] == pytest.approx((300, 300), abs=0.5)
        assert im.size[0] == 7 * 300
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "accuracy.pdf", "accuracy.png", "accuracy.svg"]  # fmt: skip
