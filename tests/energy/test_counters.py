import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import nvmsim
from nvmsim.config import AnalogConfig, validate
from nvmsim.energy import OpCounter, count_ops
from nvmsim.models import MosaicsRNN


def cfg(**crossbar) -> AnalogConfig:
    return validate(AnalogConfig, {"crossbar": crossbar})


def two_layer() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def tiny_conv() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU())


def test_linear_4_3_2_digital_bias_by_hand():
    c = count_ops(two_layer(), torch.rand(5, 4))
    a, b = c["0"], c["2"]
    # Linear 4->3: 4 rows x 3 columns x 2 devices (differential), one read per sample.
    assert (a.rows, a.cols, a.reads, a.calls) == (4, 3, 1, 1)
    assert (a.cell_reads, a.row_drives, a.adc_conversions, a.array_reads) == (24, 4, 3, 1)
    assert (a.macs, a.activations, a.devices, a.weights) == (12, 3, 24, 12)
    assert a.adc_all_columns == 256  # one 256-column array converts all its columns
    # Linear 3->2, no activation after it.
    assert (b.cell_reads, b.row_drives, b.adc_conversions, b.macs, b.activations) == (
        12, 3, 2, 6, 0,
    )  # fmt: skip
    t = c.totals
    assert (t["cell_reads"], t["row_drives"], t["macs"], t["activations"]) == (36, 7, 18, 3)
    assert c.batch == 5 and c.order == ("0", "2")


def test_analog_bias_offset_mapping_and_tiling_by_hand():
    c = count_ops(two_layer(), torch.rand(2, 4), config=cfg(bias="analog"))
    assert c["0"].rows == 5 and c["0"].cell_reads == 5 * 3 * 2 and c["0"].macs == 12
    assert c["0"].weights == 15
    # Offset: 1 device per weight + 1 reference column per array column block.
    c = count_ops(two_layer(), torch.rand(2, 4), config=cfg(mapping="offset"))
    assert c["0"].cell_reads == 4 * (3 + 1) and c["0"].devices == 16
    # 2x2 arrays: 4x3 splits into 2 row blocks x 2 column blocks.
    c = count_ops(two_layer(), torch.rand(2, 4), config=cfg(tile_rows=2, tile_cols=2))
    a = c["0"]
    assert (a.row_blocks, a.col_blocks, a.array_reads) == (2, 2, 4)
    assert (a.cell_reads, a.row_drives, a.adc_conversions, a.adc_all_columns) == (24, 8, 6, 8)
    c = count_ops(
        two_layer(), torch.rand(2, 4), config=cfg(tile_rows=2, tile_cols=2, mapping="offset")
    )
    assert c["0"].cell_reads == 4 * (3 + 2)


def test_tiny_conv_im2col_by_hand():
    c = count_ops(tiny_conv(), torch.rand(3, 1, 4, 4))
    k = c["0"]
    # 3x3 kernel, 1 -> 2 channels: a 9 x 2 crossbar, read at each of the 16 output pixels.
    assert (k.rows, k.cols, k.copies, k.reads) == (9, 2, 1, 16)
    assert k.cell_reads == 16 * 9 * 2 * 2
    assert (k.row_drives, k.adc_conversions, k.array_reads) == (144, 32, 16)
    assert (k.macs, k.activations, k.devices, k.weights) == (288, 32, 36, 18)


def test_tiny_conv_unrolled_and_toeplitz_by_hand():
    x = torch.rand(1, 1, 4, 4)
    im2col = count_ops(tiny_conv(), x, "im2col")["0"]
    un = count_ops(tiny_conv(), x, "unrolled")["0"]
    # A copy per output position, each read once: same reads and conversions, 16x devices.
    assert (un.copies, un.reads, un.reads_per_copy) == (16, 16, 1)
    for f in ("cell_reads", "row_drives", "adc_conversions", "array_reads", "macs"):
        assert getattr(un, f) == getattr(im2col, f)
    assert (un.devices, un.weights) == (16 * 36, 16 * 18)
    tp = count_ops(tiny_conv(), x, "toeplitz")["0"]
    # One dense 16 x 32 matrix (input pixels x output channels*positions), read once.
    assert (tp.rows, tp.cols, tp.reads) == (16, 32, 1)
    assert (tp.cell_reads, tp.row_drives, tp.adc_conversions) == (16 * 32 * 2, 16, 32)
    assert tp.macs == 288 and tp.devices == 1024
    # Non-zero weights: taps on real pixels (4 corners x 4 + 8 edges x 6 + 4 inner x 9 = 100)
    assert tp.weights == 100 * 2


def test_rnn_core_read_t_times():
    torch.manual_seed(0)
    rnn = MosaicsRNN(t=4, inputs=16, width=10)  # chunk 4, hidden 6
    c = count_ops(rnn, torch.rand(3, 16))
    core, out = c["core"], c["readout"]
    assert (core.rows, core.cols, core.calls, core.reads) == (10, 6, 4, 4)
    assert core.cell_reads == 4 * 10 * 6 * 2 and core.row_drives == 40
    assert (core.adc_conversions, core.macs, core.activations) == (24, 240, 24)
    assert (out.rows, out.cols, out.reads, out.cell_reads, out.activations) == (6, 10, 1, 120, 0)


def test_analog_lstm_reads_its_matrices_every_step():
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 3, batch_first=True)
    analog = nvmsim.convert(lstm, cfg())
    c = count_ops(analog, torch.rand(2, 7, 5))  # 2 sequences of 7 steps
    ih, hh = c["arrays.ih_l0"], c["arrays.hh_l0"]
    assert (ih.rows, ih.cols, hh.rows, hh.cols) == (5, 12, 3, 12)
    assert (ih.calls, ih.reads) == (1, 7) and (hh.calls, hh.reads) == (7, 7)  # per sequence
    assert ih.macs == 7 * 5 * 12 and hh.cell_reads == 7 * 3 * 12 * 2
    assert c.batch == 2


def test_joint_lstm_arrays_read_once_per_step_with_half_the_conversions():
    """Joint arrays: the same MACs and cell reads as split ones, one ADC conversion per
    gate column and step instead of two (the rows fit one array here)."""
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 3, batch_first=True)
    x = torch.rand(2, 7, 5)
    split = count_ops(nvmsim.convert(lstm, cfg()), x)
    joint = count_ops(nvmsim.convert(lstm, cfg(recurrent="joint")), x)
    j = joint["arrays.joint_l0"]
    assert (j.rows, j.cols, j.calls, j.reads) == (8, 12, 7, 7)
    assert joint.totals["macs"] == split.totals["macs"]
    assert joint.totals["cell_reads"] == split.totals["cell_reads"]
    assert 2 * joint.totals["adc_conversions"] == split.totals["adc_conversions"] > 0


def test_paper_rnn_t7_counts():
    c = count_ops(MosaicsRNN(t=7), torch.zeros(1, 1, 28, 28))
    assert c["core"].reads == 7 and (c["core"].rows, c["core"].cols) == (400, 288)
    assert c["core"].activations == 7 * 288


def test_analog_layers_use_their_own_config_and_match_plain_counts():
    config = cfg(bias="analog", mapping="offset", tile_rows=3, tile_cols=2)
    model = two_layer()
    analog = nvmsim.convert(model, config)
    x = torch.rand(2, 4)
    assert count_ops(analog, x).totals == count_ops(model, x, config=config).totals
    assert count_ops(analog, x).totals != count_ops(model, x).totals
    conv = nvmsim.convert(tiny_conv(), config)
    x = torch.rand(2, 1, 4, 4)
    assert count_ops(conv, x).totals == count_ops(tiny_conv(), x, config=config).totals


def test_counting_leaves_an_analog_model_untouched():
    config = validate(
        AnalogConfig,
        {"device": "reram", "converter": {"dac_bits": 4, "adc_bits": 6}, "crossbar": {}},
    )
    analog = nvmsim.convert(two_layer(), config)
    state = analog[0].generator.get_state()
    count_ops(analog, torch.rand(2, 4))
    assert analog[0].tile.dac_range is None and analog[0].tile.adc_range is None
    assert torch.equal(analog[0].generator.get_state(), state)


def test_counter_context_accumulates_passes_per_sample():
    model = two_layer()
    with OpCounter(model) as counter:
        model(torch.rand(3, 4))
        model(torch.rand(5, 4))
    c = counter.result()
    assert c.batch == 8 and c["0"].cell_reads == 24 and c["0"].calls == 1
    assert not model._forward_hooks and not model[0]._forward_hooks  # hooks removed


def test_noisy_activation_counted_once_and_training_flag_restored():
    model = nvmsim.models.build("mlp128", sigma_neu=0.1)
    model.train()
    c = count_ops(model, torch.rand(2, 1, 28, 28))
    assert c.total("activations") == 128
    assert model.training


def test_softmax_and_pool_are_not_neurons_and_leading_activation_is_other():
    model = nn.Sequential(nn.Tanh(), nn.Linear(4, 3), nn.Softmax(dim=1))
    c = count_ops(model, torch.rand(2, 4))
    assert c["1"].activations == 0 and c.other_activations == 4
    assert c.total("activations") == 4


def test_bad_inputs():
    with pytest.raises(ValueError, match="conv_mapping"):
        count_ops(two_layer(), torch.rand(1, 4), conv_mapping="bogus")
    with pytest.raises(ValueError, match="batch"):
        count_ops(two_layer(), torch.tensor(1.0))
    with pytest.raises(RuntimeError, match="no forward pass"):
        with OpCounter(two_layer()) as counter:
            pass
        counter.result()
    with pytest.raises(KeyError, match="no counted layer"):
        count_ops(two_layer(), torch.rand(1, 4))["nope"]


@settings(max_examples=30, deadline=None)
@given(
    n_in=st.integers(1, 40),
    n_out=st.integers(1, 40),
    batch=st.integers(1, 4),
    tile_rows=st.integers(1, 16),
    tile_cols=st.integers(1, 16),
)
def test_linear_counts_invariants(n_in, n_out, batch, tile_rows, tile_cols):
    """Tiling never changes the cells read or the MACs; it sets drives and conversions."""
    layer = nn.Linear(n_in, n_out)
    c = count_ops(
        layer, torch.rand(batch, n_in), config=cfg(tile_rows=tile_rows, tile_cols=tile_cols)
    )
    ops = c.layers[0]
    rb, cb = math.ceil(n_in / tile_rows), math.ceil(n_out / tile_cols)
    assert ops.cell_reads == n_in * n_out * 2
    assert ops.macs == n_in * n_out
    assert ops.row_drives == n_in * cb and ops.adc_conversions == n_out * rb
    assert ops.array_reads == rb * cb and ops.adc_all_columns == rb * cb * tile_cols


def test_attention_products_are_counted_as_digital_macs():
    from nvmsim.energy.model import report_from_counts
    from nvmsim.models import build

    model = build("transformer_rows")  # 28 tokens, d_model 64, 2 layers
    for m in (model, nvmsim.convert(model, AnalogConfig())):
        c = count_ops(m, torch.zeros(3, 1, 28, 28))
        assert c.digital_macs == 2 * 2 * 28 * 28 * 64  # per sample: 2 layers x (QK^T + AV)
        names = [x.name for x in c]  # q, k, v, out of both layers, digital or converted
        assert sum("self_attn" in n for n in names) == 8
    report = report_from_counts(c)
    assert report.total_pj == pytest.approx(report.vmm_pj + report.neuron_pj + 5.0 * c.digital_macs)


def test_torch_recurrent_layers_are_counted_per_matrix():
    """A plain nn.LSTM is counted as its analog twin reads it: the input matrix once per
    step of every sequence, the recurrent matrix once per step."""
    model = nvmsim.models.build("lstm_rows", hidden=16)
    digital, analog = (count_ops(m, torch.zeros(2, 1, 28, 28))
                       for m in (model, nvmsim.convert(model, AnalogConfig())))  # fmt: skip
    assert [x.name for x in digital] == ["rnn.arrays.ih_l0", "rnn.arrays.hh_l0", "head"]
    assert digital.totals == analog.totals
    assert (
        digital["rnn.arrays.hh_l0"].reads == 28 and digital["rnn.arrays.ih_l0"].macs == 28 * 28 * 64
    )
