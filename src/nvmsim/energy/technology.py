"""Energy per elementary operation for each memory technology, fitted to paper 000 Table III.

The energy model (``docs/energy.md``) is linear in the counts of
:mod:`nvmsim.energy.counters`::

    E_vmm    = e_cell * cell_reads + e_dac * row_drives + e_adc * adc
    E_neuron = e_neuron * activations
    E_update = e_pulse * pulses                       (on-chip training only)

with ``adc = adc_all_columns`` (every column of an activated array converts, the default) or
``adc = adc_conversions`` (only columns that hold weights convert).

How the ``reram`` and ``sonos`` constants were obtained (reproduced by
:func:`nvmsim.energy.fit.fit_table3`, checked by ``tests/energy``):

* Paper 000 gives no per-operation figures, only six totals (Table III) computed with the
  method of Marinella et al., IEEE JETCAS 8(1), 2018 (its ref. [17]) and the CMOS ReLU of its
  ref. [18]. We count the operations of our MLP 784-128-10, Mosaics RNN (t = 7) and CNN on the
  project's default mapping (256 x 256 arrays, differential pairs, digital bias, im2col
  convolutions) and fit, per technology, the two constants ``e_cell`` and ``e_adc`` to the
  three "VMM Op" figures by non-negative least squares on relative errors.
* The fit needs a cost that comes with every array activation: the CNN reads its small
  convolution crossbars 1,962 times per image, and only a per-activation cost makes SONOS's
  CNN 346x its MLP. ``adc_all_columns`` (256 conversions per array read) is that cost; per
  used column (``adc_conversions``) no non-negative fit comes within 40 % on the CNN.
* ``e_dac`` is 0: a per-row term is not identifiable from three numbers (adding it to the fit
  leaves it at 0); charging a row wire scales with the cells on it and is part of ``e_cell``.
* ``e_neuron`` = 0.05 pJ is exact for two of the three neuron figures: 15 pJ = 300 x 0.05 pJ
  (the 300 hidden ReLUs of Table I's 784-300-10 MLP) and 358 pJ ~ 7,156 x 0.05 pJ (the CNN's
  hidden activations). The RNN's 66 pJ is not matched (we count 2,016 activations, 101 pJ).
  Neurons are CMOS, so the value is shared by all technologies, as in Table III.
* ``e_pulse`` is not in paper 000: it is an order-of-magnitude assumption stated per preset.

``pcm`` is not fitted: its constants are extrapolated from ``reram`` (see its ``source``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: Energy per ReLU activation (pJ), CMOS, from Table III's MLP and CNN neuron figures.
E_NEURON_PJ = 0.05


@dataclass(frozen=True)
class Technology:
    """Energy per elementary operation, in picojoules."""

    name: str
    e_cell_pj: float  # per device on a driven row, per read (array charging + cell current)
    e_dac_pj: float  # per row drive (one DAC conversion + driver)
    e_adc_pj: float  # per ADC conversion
    e_neuron_pj: float  # per neuron activation (CMOS)
    e_pulse_pj: float  # per programming pulse on one device (on-chip training)
    adc_all_columns: bool = True  # every column of an activated array converts
    fitted: bool = False  # constants fitted to paper 000 Table III
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("e_cell_pj", "e_dac_pj", "e_adc_pj", "e_neuron_pj", "e_pulse_pj"):
            value = getattr(self, name)
            if not (value >= 0 and value < float("inf")):
                raise ValueError(f"Technology {self.name!r}: {name} must be >= 0, got {value}")

    def with_(self, **changes: object) -> Technology:
        """A copy with some constants changed (e.g. ``tech.with_(e_pulse_pj=0.5)``)."""
        return replace(self, **changes)


TECHNOLOGIES: dict[str, Technology] = {
    # Fitted (fit_table3): ReRAM VMM residuals +6.0 % (MLP), -6.3 % (RNN), -0.4 % (CNN).
    # e_cell = 0.016 pJ per device is V^2 * G * t for e.g. 0.2 V on a 50 uS mean cell for
    # 8 ns; Marinella et al. (2018) quote 11 fJ per MAC for their analog ReRAM core.
    "reram": Technology(
        name="reram",
        e_cell_pj=0.01615,
        e_dac_pj=0.0,
        e_adc_pj=0.9285,
        e_neuron_pj=E_NEURON_PJ,
        # Assumed: one SET/RESET pulse of ~1 V x 100 uA x 10 ns = 1 pJ (filamentary TaOx).
        e_pulse_pj=1.0,
        fitted=True,
        source="paper 000 Table III (fit, docs/energy.md); pulse energy assumed",
    ),
    # Fitted (fit_table3): SONOS VMM residuals +5.8 % (MLP), -5.2 % (RNN), -1.3 % (CNN).
    # The cells cost a third of ReRAM's (sub-threshold nA currents, Xiao et al., TCAS-I 2022)
    # but each conversion 4.4x more: Table III makes SONOS the more expensive option because
    # of its periphery, not its cells.
    "sonos": Technology(
        name="sonos",
        e_cell_pj=0.005650,
        e_dac_pj=0.0,
        e_adc_pj=4.081,
        e_neuron_pj=E_NEURON_PJ,
        # Assumed: Fowler-Nordheim program/erase at ~10 V; the tunnelling charge is tiny and
        # the cost is charging ~1 fF of gate line per cell (0.1 pJ) through a ~10 % efficient
        # charge pump: ~1 pJ per pulse.
        e_pulse_pj=1.0,
        fitted=True,
        source="paper 000 Table III (fit, docs/energy.md); pulse energy assumed",
    ),
    # Not fitted: periphery as ReRAM (fast reads), cell energy scaled by the conductance of the
    # device presets (25 uS vs 100 uS, same read voltage and time). Partial-SET pulse of
    # ~1.5 V x 100 uA x 50 ns = 7.5 pJ (order of magnitude, as in paper 004's PCM).
    "pcm": Technology(
        name="pcm",
        e_cell_pj=0.01615 * 25e-6 / 1e-4,
        e_dac_pj=0.0,
        e_adc_pj=0.9285,
        e_neuron_pj=E_NEURON_PJ,
        e_pulse_pj=7.5,
        fitted=False,
        source="extrapolated from the reram fit (cell energy x G_max ratio); pulse assumed",
    ),
}


def technology_names() -> list[str]:
    return sorted(TECHNOLOGIES)


def technology(spec: str | Technology) -> Technology:
    """A :class:`Technology` by preset name (``reram``, ``sonos``, ``pcm``) or as given."""
    if isinstance(spec, Technology):
        return spec
    key = str(spec).lower()
    if key not in TECHNOLOGIES:
        raise ValueError(
            f"unknown energy technology {spec!r}; known: {', '.join(technology_names())}"
        )
    return TECHNOLOGIES[key]


#: Energy per multiply-accumulate of a GPU, for the comparison lines (pJ). An NVIDIA A100
#: (SXM4) does 156 TFLOP/s dense TF32 on its tensor cores at a 400 W TDP: 400 W / 78e12 MAC/s
#: = 5.1 pJ per MAC at the board level and full utilisation (FP32 on CUDA cores, 19.5 TFLOP/s,
#: is 41 pJ per MAC). Marinella et al. (2018) quote "<5 pJ per operation at the board level"
#: for production accelerators and "<50 pJ per op" for GPU clusters. Small networks never
#: reach full utilisation, so this is an optimistic figure for the GPU.
GPU_PJ_PER_MAC = 5.0
