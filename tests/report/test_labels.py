from nvmsim.report.labels import as_percent, label, text, unit


def test_units_follow_the_kind_stored_in_the_config():
    additive = [{"analog": {"device": {"read_noise": {"kind": "additive"}}}}]
    proportional = [{"analog": {"device": {"read_noise": {"kind": "proportional"}}}}]
    assert label("sigma_syn", additive) == "read noise sigma (x Gmax)"
    assert label("sigma_syn", proportional) == "read noise sigma (x G)"
    assert label("sigma_syn", additive + proportional) == "read noise sigma"  # mixed: no unit
    assert label("analog.device.read_noise.sigma", additive) == "read noise sigma (x Gmax)"
    assert unit("accuracy") == "%" and label("accuracy") == "accuracy (%)"


def test_unknown_keys_read_as_themselves():
    assert label("kwargs.width") == "kwargs.width" and text("kwargs.width") == "kwargs.width"


def test_fractions_become_percent_with_the_unit_in_the_name():
    out = as_percent({"accuracy": 0.9, "accuracy_std": 0.01, "loss": 0.5, "repeats": 10})
    assert out == {"accuracy_pct": 90.0, "accuracy_std_pct": 1.0, "loss": 0.5, "repeats": 10}
