"""ADC models: ideal designs equal the uniform quantiser, SAR and ramp errors have their
structure, and a tile's ADC mismatch is drawn once per chip."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nvmsim.config import AnalogConfig, validate
from nvmsim.crossbar import adc
from nvmsim.crossbar.converters import calibrated_range, quantize_codes
from nvmsim.nn import AnalogLinear


def _codes(kind: str, bits: int, u: torch.Tensor, **design) -> torch.Tensor:
    d = adc.AdcDesign(kind=kind, **design)
    g = torch.Generator().manual_seed(3)
    table = adc.thresholds(d, bits, 1, g, dtype=torch.float64) if d.has_table else None
    return adc.convert(u.clone(), bits, d, table=table, generator=g)


@settings(max_examples=30, deadline=None)
@given(bits=st.integers(2, 10), seed=st.integers(0, 10_000))
def test_ideal_designs_equal_the_uniform_quantiser(bits, seed):
    s = adc.steps(bits)
    u = (torch.rand(500, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
         * 2.4 - 1.2) * s  # fmt: skip
    want, _ = quantize_codes(u, bits, float(s))
    for kind in ("uniform", "sar", "ramp"):
        extra = {"inl": (0.0, 0.0)} if kind == "uniform" else {}
        assert torch.equal(_codes(kind, bits, u, **extra), want), kind


def test_sar_matches_an_explicit_binary_search_of_its_cdac():
    bits, std = 6, 0.15
    d = adc.AdcDesign(kind="sar", capacitor_std=std)
    table = adc.thresholds(d, bits, 1, torch.Generator().manual_seed(7), dtype=torch.float64)
    # the same capacitors drawn independently: C_i = 2^i (+ sqrt(2^i) std eps), C_term = 1 (+ ...)
    eps = torch.randn(1, bits + 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    unit = np.array([2.0**i for i in range(bits)] + [1.0])
    caps = unit + std * np.sqrt(unit) * eps.numpy()[0]
    s = adc.steps(bits)
    u = np.linspace(-s - 2, s + 2, 997)
    got = adc.search(torch.as_tensor(u), table, torch.zeros(u.shape, dtype=torch.long), bits)
    for ui, gi in zip(u, got.tolist(), strict=True):
        reg = 0
        for i in reversed(range(bits)):
            trial = reg | (1 << i)
            level = 2**bits * sum(caps[j] for j in range(bits) if trial >> j & 1) / caps.sum()
            if ui >= level - s - 0.5:
                reg = trial
        assert gi == min(max(reg - s, -s), s)


def test_ramp_is_monotonic_and_sar_mismatch_can_skip_codes():
    bits = 6
    u = torch.linspace(-40, 40, 4001, dtype=torch.float64)
    ramp = _codes("ramp", bits, u, capacitor_std=0.5)
    assert bool((ramp[1:] >= ramp[:-1]).all())
    sar = _codes("sar", bits, u, capacitor_std=0.5)
    assert not torch.equal(sar, _codes("sar", bits, u))  # mismatch moves transitions
    assert (sar - torch.round(u).clamp(-31, 31)).abs().max() >= 1


def test_inl_table_polynomial_and_dnl_move_the_transitions():
    bits = 5
    u = torch.linspace(-14.9, 14.9, 3001, dtype=torch.float64)
    shifted = _codes("uniform", bits, u, inl=(0.3, 0.3))
    assert torch.equal(shifted, torch.round(u - 0.3).clamp(-15, 15))
    assert torch.equal(_codes("uniform", bits, u, inl_poly=(0.3,)), shifted)
    # a DNL of +0.1 LSB per code: transition r moves by 0.1 * (r - 1)
    inl = adc.nonlinearity(adc.AdcDesign(dnl=(0.1, 0.1)), bits)
    np.testing.assert_allclose(inl, 0.1 * np.arange(len(inl)), atol=1e-12)


def test_input_referred_noise_flips_codes_with_the_gaussian_probability():
    d = adc.AdcDesign(noise=0.4)
    u = torch.full((200_000,), 0.3, dtype=torch.float64)
    codes = adc.convert(u, 8, d, generator=torch.Generator().manual_seed(0))
    p_up = 0.5 * math.erfc((0.5 - 0.3) / (0.4 * math.sqrt(2)))
    assert float((codes == 1).double().mean()) == pytest.approx(p_up, abs=0.005)


def test_percentile_calibration_is_the_inverted_cdf_quantile():
    x = torch.randn(4, 3, 500, generator=torch.Generator().manual_seed(1))
    r = calibrated_range(x, dims=(0, 2), percentile=99.0)
    want = np.percentile(x.abs().permute(1, 0, 2).reshape(3, -1).numpy(), 99.0, axis=1,
                         method="inverted_cdf")  # fmt: skip
    np.testing.assert_allclose(r.flatten().numpy(), want)
    assert r.shape == (1, 3, 1)


def _layer(seed: int, **model) -> AnalogLinear:
    conv = {"adc_bits": 6, "dac_bits": 8, "adc_model": model}
    cfg = AnalogConfig(converter=conv, crossbar={"tile_rows": 32, "tile_cols": 16}, seed=seed)
    torch.manual_seed(0)
    return AnalogLinear.from_torch(torch.nn.Linear(80, 40), cfg)


def test_tile_mismatch_is_per_chip_and_sar_shares_offsets_per_adc():
    x = torch.randn(64, 80, generator=torch.Generator().manual_seed(2))
    a = _layer(1, kind="sar", capacitor_std=0.05, offset_std=0.5, gain_std=0.02, columns_per_adc=4)
    t = a.tile
    assert t.adc_table.shape == (3 * 3 * 4, 64)  # arrays (3 row x 3 col blocks) x 4 ADCs each
    off = t.adc_offset  # (G, nb, cols): four neighbouring columns of an array share one
    assert torch.equal(off[..., 0:4], off[..., :1].expand(-1, -1, 4))
    assert not torch.equal(off[..., 0], off[..., 4])
    assert torch.equal(a(x), a(x))  # noise-free: the same chip reads the same
    b = _layer(2, kind="sar", capacitor_std=0.05, offset_std=0.5, gain_std=0.02, columns_per_adc=4)
    assert not torch.equal(a(x), b(x))
    ramp = _layer(1, kind="ramp", capacitor_std=0.05).tile
    assert ramp.adc_table.shape == (9, 64)
    assert ramp.adc_index(x.device)[0, 2, 17] == 2 * 3 + 1  # array (row block 2, col block 1)


def test_adc_model_errors():
    with pytest.raises(ValueError, match="adc_model needs adc_bits"):
        validate(AnalogConfig, {"converter": {"adc_model": {"kind": "sar"}}})
    with pytest.raises(ValueError, match="needs adc_bits >= 2"):
        validate(AnalogConfig, {"converter": {"adc_bits": 1, "adc_model": {"kind": "ramp"}}})
    with pytest.raises(ValueError, match="at least 2 points"):
        validate(AnalogConfig, {"converter": {"adc_bits": 4, "adc_model": {"inl": [0.1]}}})
    with pytest.raises(ValueError, match="gain_std"):
        validate(AnalogConfig, {"converter": {"adc_bits": 4, "adc_model": {"gain_std": -1}}})
    with pytest.raises(ValueError, match="exceed"):
        adc.thresholds(adc.AdcDesign(kind="sar"), 16, 1000, None)


def test_ideal_sar_without_a_table_breaks_ties_as_its_comparator():
    bits = 5
    u = torch.arange(-40, 41, dtype=torch.float64) / 2  # integers and exact half-LSB ties
    d = adc.AdcDesign(kind="sar")
    assert not d.has_table
    table = adc.thresholds(d, bits, 1, None, dtype=torch.float64)
    searched = adc.search(u, table, torch.zeros(u.shape, dtype=torch.long), bits)
    assert torch.equal(adc.convert(u.clone(), bits, d), searched)
    assert adc.convert(torch.tensor([2.5]), bits, d).item() == 3.0  # a tie goes up


def test_adc_mismatch_is_saved_in_chip_files(tmp_path):
    from nvmsim.io.chip import load_chip, save_chip
    from nvmsim.nn import convert

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(80, 20))
    conv = {"adc_bits": 6, "adc_model": {"kind": "sar", "capacitor_std": 0.05,
                                         "offset_std": 0.3, "noise": 0.2}}  # fmt: skip
    cfg = AnalogConfig(converter=conv, crossbar={"tile_rows": 32})
    chip = convert(model, cfg)
    x = torch.randn(16, 80)
    with torch.no_grad():
        chip(x)
        save_chip(chip, tmp_path / "adc.safetensors")
        want = chip(x)
        other = convert(model, cfg.model_copy(update={"seed": 9}))
        assert not torch.equal(other[0].tile.adc_table, chip[0].tile.adc_table)
    with pytest.raises(ValueError, match="another config"):
        load_chip(other, tmp_path / "adc.safetensors")
    fresh = convert(model, cfg)
    fresh[0].tile.adc_offset.add_(1.0)  # a different chip until the file is loaded
    load_chip(fresh, tmp_path / "adc.safetensors")
    with torch.no_grad():
        assert torch.equal(fresh(x), want)
