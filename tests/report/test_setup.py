from nvmsim.report.setup import config_tables, data_table, flatten, models_table
from tests.report.conftest import make_rows


def test_flatten_gives_dotted_paths_and_keeps_lists():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {
        "a.b": 1, "a.c.d": [1, 2], "e": None}  # fmt: skip


def test_models_table_has_recipe_and_achieved_accuracy():
    head, body = models_table(make_rows(models=("cnn", "mlp")))
    assert head[:3] == ["model", "source", "kwargs"]
    assert "learning rate" in head and head[-1] == "software (digital) accuracy (%)"
    cnn = dict(zip(head, body[0], strict=True))
    assert cnn["model"] == "cnn" and cnn["source"] == "arch cnn"
    assert cnn["training epochs"] == "3" and cnn["learning rate"] == "0.01"
    assert cnn["software (digital) accuracy (%)"] == "91.00"


def test_constant_and_varying_settings_are_split(rows):
    constant, varying = config_tables(rows)
    settings = {line[0]: line[2] for line in constant[1]}
    assert settings["analog.device.read_noise.kind"] == "additive"
    assert settings["analog.crossbar.tile_rows"] == "256"
    assert "analog.seed" not in settings  # per device instance: not a setting
    assert "analog.device.g_points" not in settings  # empty lists are not shown
    head, lines = varying
    assert head == ["read noise sigma (x Gmax)", "test-input noise sigma (x pixel range)"]
    assert lines[0] == ["0", "0"] and len(lines) == 6


def test_data_table_and_runs_without_configs():
    (_, body) = data_table(make_rows())
    assert ["dataset", "digits"] in body and ["test images", "360"] in body
    bare = [{"axes": {"x": 1}, "metrics": {"accuracy": 0.5}}]
    assert models_table(bare) is None and data_table(bare) is None
    assert config_tables(bare) == (None, None)
