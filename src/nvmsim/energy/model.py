"""Energy per inference and per on-chip training example, from operation counts.

``estimate(model, "reram")`` counts one sample's operations (:mod:`.counters`) and prices
them with a technology's constants (:mod:`.technology`); the report splits every layer into
its VMM part (cells, row drives, ADC) and its neuron part, beside a GPU doing the same MACs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.energy.counters import ConvMapping, LayerOps, OpCounts, count_ops
from nvmsim.energy.technology import GPU_PJ_PER_MAC, Technology, technology

UpdateMode = Literal["once", "per_read"]


@dataclass(frozen=True)
class LayerEnergy:
    """One layer's energy per inference (pJ), with the counts it came from."""

    ops: LayerOps
    cell_pj: float
    dac_pj: float
    adc_pj: float
    neuron_pj: float

    @property
    def name(self) -> str:
        return self.ops.name

    @property
    def vmm_pj(self) -> float:
        """Array and periphery: cells, row drives, ADC conversions."""
        return self.cell_pj + self.dac_pj + self.adc_pj

    @property
    def total_pj(self) -> float:
        return self.vmm_pj + self.neuron_pj


@dataclass(frozen=True)
class EnergyReport:
    """Energy per inference (one input sample) of one model on one technology."""

    model_name: str
    technology: Technology
    counts: OpCounts
    layers: tuple[LayerEnergy, ...]
    other_neuron_pj: float  # activations that follow no crossbar layer
    gpu_pj_per_mac: float = GPU_PJ_PER_MAC

    @property
    def conv_mapping(self) -> str:
        return self.counts.conv_mapping

    @property
    def vmm_pj(self) -> float:
        return sum(layer.vmm_pj for layer in self.layers)

    @property
    def neuron_pj(self) -> float:
        return sum(layer.neuron_pj for layer in self.layers) + self.other_neuron_pj

    @property
    def digital_pj(self) -> float:
        """Products of activations by activations (attention's ``Q K^T``, ``A V``), done in
        CMOS: priced per MAC as the GPU baseline (an upper bound for a dedicated unit)."""
        return self.counts.digital_macs * self.gpu_pj_per_mac

    @property
    def total_pj(self) -> float:
        return self.vmm_pj + self.neuron_pj + self.digital_pj

    @property
    def total_nj(self) -> float:
        return self.total_pj / 1e3

    @property
    def macs(self) -> float:
        return self.counts.total("macs")

    @property
    def pj_per_mac(self) -> float:
        return self.total_pj / self.macs if self.macs else float("nan")

    @property
    def gpu_pj(self) -> float:
        """A GPU doing the same MACs at ``gpu_pj_per_mac`` (see ``GPU_PJ_PER_MAC``)."""
        return self.macs * self.gpu_pj_per_mac

    def __getitem__(self, name: str) -> LayerEnergy:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}; layers: {[x.name for x in self.layers]}")


def _adc_count(ops: LayerOps, tech: Technology) -> float:
    return ops.adc_all_columns if tech.adc_all_columns else ops.adc_conversions


def layer_energy(ops: LayerOps, tech: Technology) -> LayerEnergy:
    """Price one layer's counts with ``tech``'s constants."""
    return LayerEnergy(
        ops=ops,
        cell_pj=tech.e_cell_pj * ops.cell_reads,
        dac_pj=tech.e_dac_pj * ops.row_drives,
        adc_pj=tech.e_adc_pj * _adc_count(ops, tech),
        neuron_pj=tech.e_neuron_pj * ops.activations,
    )


def report_from_counts(
    counts: OpCounts,
    device: str | Technology = "reram",
    model_name: str = "model",
    gpu_pj_per_mac: float = GPU_PJ_PER_MAC,
) -> EnergyReport:
    """An :class:`EnergyReport` from counts already taken."""
    tech = technology(device)
    return EnergyReport(
        model_name=model_name,
        technology=tech,
        counts=counts,
        layers=tuple(layer_energy(ops, tech) for ops in counts),
        other_neuron_pj=tech.e_neuron_pj * counts.other_activations,
        gpu_pj_per_mac=gpu_pj_per_mac,
    )


def _resolve_model(model: nn.Module | str, **build_kwargs) -> tuple[nn.Module, str]:
    if isinstance(model, str):
        from nvmsim.models import build

        return build(model, **build_kwargs), model
    if build_kwargs:
        raise ValueError("build keyword arguments are only for models given by name")
    return model, type(model).__name__


def _example(input_shape: Sequence[int], model: nn.Module) -> torch.Tensor:
    """One zero sample on the model's device and in its dtype."""
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape must be positive sizes without the batch, got {shape}")
    p = next((t for t in model.parameters() if t.is_floating_point()), None)
    kw = {} if p is None else {"device": p.device, "dtype": p.dtype}
    return torch.zeros(1, *shape, **kw)


def estimate(
    model: nn.Module | str,
    device: str | Technology = "reram",
    input_shape: Sequence[int] = (1, 28, 28),
    conv_mapping: ConvMapping = "im2col",
    config: AnalogConfig | None = None,
    gpu_pj_per_mac: float = GPU_PJ_PER_MAC,
    **build_kwargs,
) -> EnergyReport:
    """Energy per inference of ``model`` (a module, or a name for ``nvmsim.models.build``).

    ``input_shape`` is one sample's shape (no batch). Plain ``nn.Linear`` / ``nn.Conv2d``
    layers are counted as if mapped with ``config`` (default ``AnalogConfig()``); analog
    layers use their own. ``conv_mapping`` is ``"im2col"`` (paper 000's Table III implies
    it), ``"unrolled"`` or ``"toeplitz"`` (see :mod:`nvmsim.energy.counters`).
    """
    module, name = _resolve_model(model, **build_kwargs)
    counts = count_ops(module, _example(input_shape, module), conv_mapping, config)
    return report_from_counts(counts, device, name, gpu_pj_per_mac)


# ---------------------------------------------------------------------- on-chip training
@dataclass(frozen=True)
class LayerTraining:
    """One layer's on-chip training energy per example (pJ)."""

    name: str
    forward_pj: float  # the inference reads and activations
    backward_pj: float  # transposed reads + activation derivatives
    update_pj: float  # programming pulses
    backward_reads: float
    update_pulses: float

    @property
    def total_pj(self) -> float:
        return self.forward_pj + self.backward_pj + self.update_pj


@dataclass(frozen=True)
class TrainingReport:
    """Energy of one on-chip training example (forward, backward, update) vs a GPU."""

    inference: EnergyReport
    layers: tuple[LayerTraining, ...]
    pulses_per_update: float
    update: str
    gpu_macs: float  # forward + backward-data + weight-gradient MACs

    @property
    def technology(self) -> Technology:
        return self.inference.technology

    @property
    def forward_pj(self) -> float:
        return self.inference.total_pj

    @property
    def backward_pj(self) -> float:
        return sum(x.backward_pj for x in self.layers) + self.inference.other_neuron_pj

    @property
    def update_pj(self) -> float:
        return sum(x.update_pj for x in self.layers)

    @property
    def total_pj(self) -> float:
        return self.forward_pj + self.backward_pj + self.update_pj

    @property
    def gpu_pj(self) -> float:
        return self.gpu_macs * self.inference.gpu_pj_per_mac

    @property
    def gpu_ratio(self) -> float:
        """How many times more energy the GPU needs (> 1: the crossbar wins)."""
        return self.gpu_pj / self.total_pj


def _backward_fraction(ops: LayerOps, first: bool) -> float:
    """Share of a layer's reads that are mirrored by transposed reads in backprop.

    Every read is mirrored, except that nothing propagates back into the network input: the
    first layer to run skips the transposed read of its first call (all of it, unless it is
    recurrent: the Mosaics RNN core still back-propagates through its t - 1 later calls).
    """
    if not first or ops.calls <= 0:
        return 1.0
    return (ops.calls - 1) / ops.calls


def training_energy_per_example(
    model: nn.Module | str,
    device: str | Technology = "reram",
    pulses_per_update: float = 1.0,
    input_shape: Sequence[int] = (1, 28, 28),
    conv_mapping: ConvMapping = "im2col",
    config: AnalogConfig | None = None,
    update: UpdateMode = "once",
    gpu_pj_per_mac: float = GPU_PJ_PER_MAC,
    **build_kwargs,
) -> TrainingReport:
    """Energy of one on-chip (in-array) training example, backprop with outer-product updates.

    * forward: the inference of :func:`estimate`;
    * backward: every crossbar read is mirrored by a transposed read (columns driven, rows
      converted: same cells, ``cols * row_blocks`` drives, ``rows * col_blocks`` conversions
      or ``tile_rows`` per array), except the network input's gradient; each activation's
      derivative costs one neuron operation;
    * update: each trainable weight receives ``pulses_per_update`` pulses on one of its
      devices (paper 004: SET on G+ or G-; fractional = average over weights). ``update =
      "once"`` applies the example's summed gradient once (digital accumulation over conv
      positions / RNN steps, not priced); ``"per_read"`` pulses after every read.

    The GPU line prices forward, backward-data and weight-gradient MACs at ``gpu_pj_per_mac``.
    """
    if not pulses_per_update >= 0:
        raise ValueError(f"pulses_per_update must be >= 0, got {pulses_per_update}")
    if update not in ("once", "per_read"):
        raise ValueError(f"update must be 'once' or 'per_read', got {update!r}")
    inference = estimate(
        model, device, input_shape, conv_mapping, config, gpu_pj_per_mac, **build_kwargs
    )
    tech = inference.technology
    first_name = inference.counts.order[0] if inference.counts.order else None
    layers, gpu_macs = [], 0.0
    for le in inference.layers:
        ops = le.ops
        frac = _backward_fraction(ops, ops.name == first_name)
        back_reads = frac * ops.reads
        cells_per_read = ops.cell_reads / ops.reads if ops.reads else 0.0
        drives = ops.cols * ops.row_blocks
        arrays = ops.row_blocks * ops.col_blocks
        conv = arrays * ops.tile_rows if tech.adc_all_columns else ops.rows * ops.col_blocks
        per_read = tech.e_cell_pj * cells_per_read + tech.e_dac_pj * drives + tech.e_adc_pj * conv
        pulses = ops.weights * pulses_per_update
        if update == "per_read":
            pulses *= ops.reads_per_copy
        layers.append(
            LayerTraining(
                name=ops.name,
                forward_pj=le.total_pj,
                backward_pj=back_reads * per_read + tech.e_neuron_pj * ops.activations,
                update_pj=tech.e_pulse_pj * pulses,
                backward_reads=back_reads,
                update_pulses=pulses,
            )
        )
        gpu_macs += ops.macs * (2.0 + frac)
    return TrainingReport(
        inference=inference,
        layers=tuple(layers),
        pulses_per_update=float(pulses_per_update),
        update=update,
        gpu_macs=gpu_macs,
    )
