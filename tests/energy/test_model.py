import pytest
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from nvmsim.energy import (
    GPU_PJ_PER_MAC,
    Technology,
    energy_cli,
    estimate,
    render_table,
    render_training,
    technology,
    training_energy_per_example,
)
from nvmsim.models import MosaicsRNN

UNIT = Technology(
    name="unit", e_cell_pj=1, e_dac_pj=10, e_adc_pj=100, e_neuron_pj=1000, e_pulse_pj=10000,
    adc_all_columns=False,
)  # fmt: skip


def two_layer() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_inference_energy_by_hand():
    rep = estimate(two_layer(), UNIT, input_shape=(4,))
    a, b = rep["0"], rep["2"]
    assert (a.cell_pj, a.dac_pj, a.adc_pj, a.neuron_pj) == (24, 40, 300, 3000)
    assert (b.cell_pj, b.dac_pj, b.adc_pj, b.neuron_pj) == (12, 30, 200, 0)
    assert rep.vmm_pj == 24 + 40 + 300 + 12 + 30 + 200
    assert rep.total_pj == rep.vmm_pj + 3000
    assert rep.macs == 18 and rep.gpu_pj == 18 * GPU_PJ_PER_MAC
    # Every column of an activated (256-column) array converts:
    rep = estimate(two_layer(), UNIT.with_(adc_all_columns=True), input_shape=(4,))
    assert rep["0"].adc_pj == rep["2"].adc_pj == 256 * 100


@pytest.mark.parametrize("analog", [False, True])
def test_a_float64_model_is_counted_in_its_own_dtype(analog):
    """The example input follows the model's dtype (and device): a ``.double()`` model, plain
    or converted, counts like its float32 original."""
    import nvmsim

    net = two_layer()
    model = nvmsim.convert(net, None) if analog else net
    want = estimate(model, UNIT, input_shape=(4,))
    got = estimate(model.double(), UNIT, input_shape=(4,))
    assert got.total_pj == want.total_pj and got.macs == want.macs == 18


def test_training_energy_by_hand():
    tr = training_energy_per_example(two_layer(), UNIT, pulses_per_update=2, input_shape=(4,))
    a, b = tr.layers
    assert a.backward_reads == 0  # nothing propagates into the network input
    assert a.backward_pj == 3000  # one derivative per activation
    assert (a.update_pulses, a.update_pj) == (24, 240_000)
    # Transposed read of the 3x2 layer: 12 cells, 2 column drives, 3 row conversions.
    assert b.backward_reads == 1 and b.backward_pj == 12 + 2 * 10 + 3 * 100
    assert (b.update_pulses, b.update_pj) == (12, 120_000)
    assert tr.forward_pj == 3606
    assert tr.total_pj == 3606 + 3000 + 332 + 360_000
    assert tr.gpu_macs == 12 * 2 + 6 * 3
    assert tr.gpu_ratio == pytest.approx(tr.gpu_pj / tr.total_pj)


def test_training_rnn_backprop_through_time_and_per_read_updates():
    rnn = MosaicsRNN(t=4, inputs=16, width=10)
    once = training_energy_per_example(rnn, UNIT, input_shape=(16,))
    core = once.layers[0]
    assert core.backward_reads == 3  # t - 1 transposed reads of the core
    assert core.update_pulses == 60  # 10 x 6 weights, one pulse each
    per = training_energy_per_example(rnn, UNIT, input_shape=(16,), update="per_read")
    assert per.layers[0].update_pulses == 4 * 60


def test_training_conv_mapping_changes_updates():
    once = {
        m: training_energy_per_example("cnn000", "reram", conv_mapping=m)
        for m in ("im2col", "unrolled")
    }
    assert once["unrolled"].forward_pj == pytest.approx(once["im2col"].forward_pj)
    conv1 = {m: r.layers[0].update_pulses for m, r in once.items()}
    assert conv1["unrolled"] == 784 * conv1["im2col"] == 784 * 27  # a copy per pixel
    assert once["unrolled"].update_pj > 2 * once["im2col"].update_pj


def test_paper_training_comparison_ordering():
    """Slides of paper 001: RNN training costs ~15-40x less than the CNN's; MLP is cheapest."""
    e = {
        name: training_energy_per_example(name, "reram", **kw).total_pj
        for name, kw in (("mlp128", {}), ("mosaics_rnn", {"t": 7}), ("cnn000", {}))
    }
    assert e["mlp128"] < e["mosaics_rnn"] < e["cnn000"]


def test_estimate_by_name_and_errors():
    rep = estimate("mosaics_rnn", "sonos", t=14)
    assert rep.counts["core"].reads == 14 and rep.model_name == "mosaics_rnn"
    with pytest.raises(ValueError, match="unknown energy technology 'ideal'"):
        estimate(two_layer(), "ideal", input_shape=(4,))
    with pytest.raises(ValueError, match="only for models given by name"):
        estimate(two_layer(), "reram", input_shape=(4,), t=7)
    with pytest.raises(ValueError, match="input_shape"):
        estimate(two_layer(), "reram", input_shape=(0,))
    with pytest.raises(ValueError, match="pulses_per_update"):
        training_energy_per_example(two_layer(), "reram", -1.0, input_shape=(4,))
    with pytest.raises(ValueError, match="e_cell_pj"):
        UNIT.with_(e_cell_pj=-1.0)
    assert technology("ReRAM") is technology("reram")


def test_render_table_and_cli():
    rep = estimate("cnn000", "reram")
    table = render_table(rep)
    assert isinstance(table, Table) and table.row_count == len(rep.layers) + 1
    assert isinstance(
        render_training(training_energy_per_example(two_layer(), "reram", input_shape=(4,))), Table
    )
    console = Console(width=140, record=True)
    energy_cli("mosaics_rnn", "sonos", "im2col", 7, console=console)
    text = console.export_text()
    assert "core (linear)" in text and "paper 000 Table III (RNN, sonos): 42.7 nJ" in text
    console = Console(width=140, record=True)
    energy_cli("mlp528", "pcm", "im2col", None, console=console)
    assert "Table III" not in console.export_text()
    with pytest.raises(ValueError, match="unknown model"):
        energy_cli("nope", "reram", "im2col", None)
    with pytest.raises(ValueError, match="unknown energy technology"):
        energy_cli("mlp128", "nope", "im2col", None)
    with pytest.raises(ValueError, match="conv mapping"):
        energy_cli("cnn000", "reram", "nope", None)
    with pytest.raises(ValueError, match="mosaics_rnn only"):
        energy_cli("mlp128", "reram", "im2col", 7)
