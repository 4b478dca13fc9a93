"""Our energy estimates against paper 000 Table III, and the fit behind the constants."""

import pytest

from nvmsim.energy import TECHNOLOGIES, estimate
from nvmsim.energy.fit import PAPER_TABLE3, compare_table3, fit_table3, paper_counts


@pytest.fixture(scope="module")
def cells():
    return {(c.row, c.device): c for c in compare_table3()}


@pytest.mark.parametrize("device", ["reram", "sonos"])
@pytest.mark.parametrize("row", ["MLP", "RNN", "CNN"])
def test_table3_totals_within_10_percent(cells, row, device):
    cell = cells[(row, device)]
    assert abs(cell.total_error) < 0.10, (row, device, cell.ours_total_nj, cell.paper.total_nj)
    assert abs(cell.vmm_error) < 0.10


def test_neuron_parts(cells):
    # 0.05 pJ per activation: the CNN's 7,156 hidden activations give Table III's 358 pJ.
    assert cells[("CNN", "reram")].ours_neuron_pj == pytest.approx(358, rel=0.01)
    mlp300 = estimate("mlp300", "reram")
    assert mlp300.neuron_pj == pytest.approx(15.0, rel=1e-9)  # 300 hidden ReLUs
    # The RNN's 66 pJ is not reproduced: we count 7 x 288 activations (docs/energy.md).
    assert cells[("RNN", "reram")].ours_neuron_pj == pytest.approx(100.8)


def test_rnn_saves_over_cnn_as_in_the_paper(cells):
    """Paper: RNN 13-38x below the CNN. Its own table says 13.5x (ReRAM) and 48.8x (SONOS)."""
    for device in ("reram", "sonos"):
        ours = cells[("CNN", device)].ours_total_nj / cells[("RNN", device)].ours_total_nj
        paper = PAPER_TABLE3[("CNN", device)].total_nj / PAPER_TABLE3[("RNN", device)].total_nj
        assert ours >= 13
        assert ours == pytest.approx(paper, rel=0.10)
    reram = cells[("CNN", "reram")].ours_total_nj / cells[("RNN", "reram")].ours_total_nj
    assert 13 <= reram <= 38
    for device in ("reram", "sonos"):  # "the RNN consumes only ~7x more than the MLP"
        ratio = cells[("RNN", device)].ours_total_nj / cells[("MLP", device)].ours_total_nj
        assert 6 <= ratio <= 9


def test_fit_reproduces_the_presets():
    for device, fit in fit_table3().items():
        tech = TECHNOLOGIES[device]
        assert fit.features == ("cell_reads", "adc_all_columns")
        e_cell, e_adc = fit.constants_pj
        assert tech.e_cell_pj == pytest.approx(e_cell, rel=1e-3)
        assert tech.e_adc_pj == pytest.approx(e_adc, rel=1e-3)
        assert tech.e_neuron_pj == pytest.approx(fit.e_neuron_pj, rel=1e-3)
        assert tech.e_dac_pj == 0 and tech.fitted and tech.adc_all_columns
        assert max(abs(r) for r in fit.residuals.values()) < 0.07


def test_a_row_drive_term_is_not_identifiable():
    """Given a free per-row constant, the fit leaves it at zero."""
    fits = fit_table3(features=("cell_reads", "row_drives", "adc_all_columns"))
    for fit in fits.values():
        assert fit.constants_pj[1] == 0


def test_per_used_column_adc_cannot_explain_the_cnn():
    """Without a cost per array activation no non-negative fit gets the CNN within 40 %."""
    for fit in fit_table3(features=("cell_reads", "row_drives", "adc_conversions")).values():
        assert fit.residuals["CNN"] < -0.4


def test_mapping_implied_by_the_cnn_figures():
    """im2col fits both technologies; the dense Toeplitz mapping cannot fit SONOS's CNN."""
    toeplitz = fit_table3(conv_mapping="toeplitz")
    assert toeplitz["sonos"].residuals["CNN"] < -0.5
    ours = {
        m: estimate("cnn000", "sonos", conv_mapping=m).total_nj
        for m in ("im2col", "unrolled", "toeplitz")
    }
    assert ours["unrolled"] == pytest.approx(ours["im2col"])  # same reads, more devices
    assert ours["toeplitz"] < 0.5 * PAPER_TABLE3[("CNN", "sonos")].total_nj
    assert ours["im2col"] == pytest.approx(2084, rel=0.10)


def test_paper_model_counts():
    c = paper_counts()
    assert c["CNN"].total("reads") == 784 + 784 + 196 + 196 + 1 + 1
    assert c["CNN"].total("activations") == 2 * 3 * 784 + 2 * 6 * 196 + 100
    assert c["MLP"].total("macs") == 784 * 128 + 128 * 10
    assert c["RNN"].total("macs") == 7 * 400 * 288 + 288 * 10
