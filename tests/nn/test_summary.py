"""``summary()``: arrays, devices, ADCs and the analog share of MACs, against hand counts."""

import warnings

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import nvmsim
from nvmsim.cli import app
from nvmsim.config import AnalogConfig, validate
from nvmsim.nn import Summary, summary

runner = CliRunner()


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 3, padding=1)
        self.bn = nn.BatchNorm2d(64)
        self.dw = nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False)
        self.conv3 = nn.Conv2d(64, 32, 3)  # 64 channels x 3x3 = 576 rows
        self.lstm = nn.LSTM(32, 16, batch_first=True)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):  # (B, 3, 8, 8)
        h = self.conv3(self.dw(self.bn(self.conv(x))))  # (B, 32, 6, 6)
        h, _ = self.lstm(h.flatten(2).transpose(1, 2))  # 36 steps
        return self.fc(h[:, -1])


def _converted(**crossbar):
    cfg = validate(AnalogConfig, {"crossbar": {"tile_rows": 256, "tile_cols": 256, **crossbar}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the LSTM stays digital
        return nvmsim.convert(Net().eval(), cfg, exclude=["lstm"])


def _rows(s):
    return {r.name: r for r in s.rows}


def test_rows_arrays_devices_and_adcs_match_the_hand_partition():
    s = summary(_converted())
    assert isinstance(s, Summary) and not s.per_example
    rows = _rows(s)
    assert list(rows) == ["conv", "dw", "conv3", "lstm", "fc"]  # batch norm: periphery, no row
    assert [r.analog for r in s.rows] == [True, True, True, False, True]
    # (groups, row blocks, column blocks); 28 channels of 9 rows fit in 256 rows
    expect = {
        "conv": ((1, 1, 1), 27, 64),
        "dw": ((64, 1, 1), 9, 1),
        "conv3": ((1, 3, 1), 576, 32),
        "fc": ((1, 1, 1), 16, 10),
    }
    for name, (arrays, n_rows, n_cols) in expect.items():
        r = rows[name]
        assert r.arrays == arrays, name
        g, rb, _ = arrays
        assert r.devices == 2 * n_rows * n_cols * g, name  # differential: two per weight
        assert r.adcs == g * rb * n_cols, name
    assert rows["conv"].shape == (64, 3, 3, 3) and rows["dw"].kind == "AnalogConv2d"
    lstm = rows["lstm"]
    assert lstm.arrays is None and lstm.devices == 0 and lstm.adcs == 0
    assert lstm.kind == "LSTM" and lstm.shape == (4 * 16 * 32 + 4 * 16 * 16,)
    assert s.arrays == 1 + 64 + 3 + 1
    assert s.devices == sum(2 * r * c * a[0] for a, r, c in expect.values())
    # without an example every layer counts one read: the share of weights
    weights = {"conv": 27 * 64, "dw": 9 * 64, "conv3": 576 * 32, "lstm": 3072, "fc": 160}
    assert {r.name: r.macs for r in s.rows} == weights
    analog = sum(v for k, v in weights.items() if k != "lstm")
    assert s.analog_share == pytest.approx(analog / sum(weights.values()))


def test_the_offset_mapping_and_small_arrays():
    s = summary(_converted(tile_rows=64, tile_cols=16, mapping="offset"))
    rows = _rows(s)
    # 7 channels (63 rows) per 64-row array: 576 rows -> 10 arrays; 32 columns -> 2
    assert rows["conv3"].arrays == (1, 10, 2)
    # one device per weight plus one reference device per row and column array
    assert rows["conv3"].devices == 576 * 32 + 576 * 2
    assert rows["conv"].arrays == (1, 1, 4)
    assert rows["conv"].devices == 27 * 64 + 27 * 4
    assert rows["dw"].devices == 64 * (9 * 1 + 9 * 1)
    assert rows["conv3"].adcs == 10 * 32


def test_analog_share_with_an_example_counts_the_forward_pass():
    b = 2
    s = summary(_converted(), torch.zeros(b, 3, 8, 8))
    assert s.per_example
    macs = {
        "conv": b * 64 * 8 * 8 * 27,
        "dw": b * 64 * 8 * 8 * 9,
        "conv3": b * 32 * 6 * 6 * 576,
        "lstm": b * 36 * (4 * 16 * 32 + 4 * 16 * 16),  # every step reads both matrices
        "fc": b * 10 * 16,
    }
    assert {r.name: r.macs for r in s.rows} == macs
    assert s.total_macs == sum(macs.values())
    assert s.analog_macs == s.total_macs - macs["lstm"]
    assert s.analog_share == pytest.approx(s.analog_macs / s.total_macs)


def test_str_names_every_layer():
    s = summary(_converted(), torch.zeros(1, 3, 8, 8))
    text = str(s)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["layer", "type", "where"]
    for name in ("conv", "dw", "conv3", "lstm", "fc"):
        assert any(line.split()[0] == name for line in lines[2:-1]), name
    assert "64 x 1x1" in text  # groups x (row x column arrays)
    assert lines[-1] == s.footer()
    assert "69 arrays" in lines[-1] and "% of" in lines[-1]


def test_an_analog_lstm_is_its_matrices():
    cfg = validate(AnalogConfig, {"crossbar": {"tile_rows": 16}})
    model = nvmsim.convert(nn.Sequential(nn.LSTM(32, 16, proj_size=8)), cfg)
    b, t = 2, 5
    s = summary(model, torch.zeros(t, b, 32))
    rows = _rows(s)
    assert list(rows) == ["0.ih_l0", "0.hh_l0", "0.hr_l0"]
    assert rows["0.ih_l0"].shape == (64, 32) and rows["0.ih_l0"].arrays == (1, 2, 1)
    assert rows["0.hh_l0"].shape == (64, 8) and rows["0.hr_l0"].shape == (8, 16)
    # every step reads each matrix once per sequence
    assert {k: r.macs for k, r in rows.items()} == {
        "0.ih_l0": b * t * 64 * 32, "0.hh_l0": b * t * 64 * 8, "0.hr_l0": b * t * 8 * 16,
    }  # fmt: skip
    assert s.analog_share == 1.0


def test_digital_model_has_no_analog_share():
    s = summary(nn.Sequential(nn.Linear(3, 2)), torch.zeros(1, 3))
    assert s.analog_share == 0 and s.arrays == 0 and s.rows[0].analog is False


def test_cli_summary_of_mobilenet():
    res = runner.invoke(app, ["summary", "mobilenet"])
    assert res.exit_code == 0, res.output
    assert "mobilenet on ideal (256x256 arrays)" in res.output
    model = nvmsim.models.build("mobilenet").eval()
    expected = summary(nvmsim.convert(model), torch.zeros(1, 3, 32, 32)).footer()
    assert expected in res.output
    assert "100.0 % of" in expected


def test_cli_summary_of_an_unknown_arch_is_a_one_line_error():
    res = runner.invoke(app, ["summary", "no_such_net"])
    assert res.exit_code != 0
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    assert "unknown model 'no_such_net'" in lines[0] and "mobilenet" in lines[0]
    assert "Traceback" not in res.output


def test_cli_summary_of_an_unknown_device_is_an_error():
    res = runner.invoke(app, ["summary", "mobilenet", "--device", "no_such_device"])
    assert res.exit_code != 0
    assert "no_such_device" in res.output and "Traceback" not in res.output
