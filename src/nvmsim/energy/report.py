"""Rich tables of energy reports, and the body of ``nvmsim energy MODEL --device reram``."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from nvmsim.energy.counters import CONV_MAPPINGS
from nvmsim.energy.model import EnergyReport, TrainingReport, estimate
from nvmsim.energy.technology import technology

#: One sample's shape for the registered models that do not take 28 x 28 images.
INPUT_SHAPES: dict[str, tuple[int, ...]] = {"mlp528": (1, 22, 24), "cifar_cnn": (3, 32, 32)}


def format_energy(pj: float) -> str:
    """``1234.5`` pJ -> ``"1.23 nJ"``; picks pJ, nJ, uJ or mJ."""
    for unit, scale in (("mJ", 1e9), ("µJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def _n(x: float) -> str:
    """Counts: exact below 100,000 (``"45,376"``), then ``"598k"``, ``"19.1M"``, ``"2.3G"``."""
    x = float(x)
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= 100 * scale if suffix == "k" else abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:,.0f}" if x.is_integer() else f"{x:,.1f}"


def render_table(report: EnergyReport) -> Table:
    """Per-layer counts and energy per inference, with a total row and a GPU line."""
    tech = report.technology
    adc_note = (
        "every column of an activated array converts"
        if tech.adc_all_columns
        else "only columns holding weights convert"
    )
    table = Table(
        title=(
            f"Energy per inference: {report.model_name} on {tech.name} "
            f"(conv mapping {report.conv_mapping})"
        ),
        caption=(
            f"{format_energy(report.total_pj)} per inference "
            f"({report.total_pj / report.macs:.3g} pJ/MAC); "
            f"a GPU at {report.gpu_pj_per_mac:g} pJ/MAC: {format_energy(report.gpu_pj)}. "
            f"ADC: {adc_note}."
            if report.macs
            else None
        ),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("layer", no_wrap=True)
    for col in ("crossbar", "reads", "cells", "rows", "ADC", "MACs", "neur.", "VMM", "neuron"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("total", justify="right", no_wrap=True)
    for le in report.layers:
        ops = le.ops
        adc = ops.adc_all_columns if tech.adc_all_columns else ops.adc_conversions
        table.add_row(
            f"{ops.name} ({ops.kind})", ops.shape, _n(ops.reads), _n(ops.cell_reads),
            _n(ops.row_drives), _n(adc), _n(ops.macs), _n(ops.activations),
            format_energy(le.vmm_pj), format_energy(le.neuron_pj), format_energy(le.total_pj),
        )  # fmt: skip
    totals = report.counts.totals
    if report.other_neuron_pj:
        table.add_row(
            "(other activations)", "", "", "", "", "", "",
            _n(report.counts.other_activations), "", format_energy(report.other_neuron_pj),
            format_energy(report.other_neuron_pj),
        )  # fmt: skip
    if report.digital_pj:
        table.add_row(
            f"(attention products, digital at {report.gpu_pj_per_mac:g} pJ/MAC)", "", "", "",
            "", "", _n(report.counts.digital_macs), "", "", "", format_energy(report.digital_pj),
        )  # fmt: skip
    adc_total = totals["adc_all_columns" if tech.adc_all_columns else "adc_conversions"]
    table.add_section()
    table.add_row(
        "total", "", _n(totals["reads"]), _n(totals["cell_reads"]),
        _n(totals["row_drives"]), _n(adc_total), _n(totals["macs"]),
        _n(totals["activations"]), format_energy(report.vmm_pj),
        format_energy(report.neuron_pj), format_energy(report.total_pj), style="bold",
    )  # fmt: skip
    return table


def render_training(report: TrainingReport) -> Table:
    """On-chip training energy per example, per layer, with the GPU comparison."""
    inf = report.inference
    table = Table(
        title=(
            f"On-chip training energy per example: {inf.model_name} on {report.technology.name} "
            f"({report.pulses_per_update:g} pulses per weight, update {report.update})"
        ),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        caption=(
            f"GPU at {inf.gpu_pj_per_mac:g} pJ/MAC x {report.gpu_macs:,.0f} MACs: "
            f"{format_energy(report.gpu_pj)} ({report.gpu_ratio:.3g}x the crossbar)"
        ),
    )
    for col in ("layer", "forward", "backward reads", "backward", "pulses", "update", "total"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for x in report.layers:
        table.add_row(
            x.name, format_energy(x.forward_pj), _n(x.backward_reads),
            format_energy(x.backward_pj), _n(x.update_pulses), format_energy(x.update_pj),
            format_energy(x.total_pj),
        )  # fmt: skip
    table.add_section()
    table.add_row(
        "total", format_energy(report.forward_pj), "", format_energy(report.backward_pj), "",
        format_energy(report.update_pj), format_energy(report.total_pj), style="bold",
    )  # fmt: skip
    return table


def energy_cli(
    model_name: str,
    device: str = "reram",
    conv_mapping: str = "im2col",
    t: int | None = None,
    console: Console | None = None,
) -> None:
    """Print the energy table of a named model (``nvmsim energy MODEL --device reram``).

    ``t`` is the Mosaics RNN's number of steps (only for ``mosaics_rnn``). Bad names raise
    ``ValueError`` with the list of known ones (the CLI turns that into an error message).
    """
    from nvmsim.energy.fit import PAPER_TABLE3, paper_row
    from nvmsim.models import REGISTRY

    if model_name not in REGISTRY:
        raise ValueError(f"unknown model {model_name!r}; known: {', '.join(sorted(REGISTRY))}")
    tech = technology(device)
    if conv_mapping not in CONV_MAPPINGS:
        raise ValueError(
            f"unknown conv mapping {conv_mapping!r}; known: {', '.join(CONV_MAPPINGS)}"
        )
    kwargs = {}
    if t is not None:
        if model_name != "mosaics_rnn":
            raise ValueError(f"t (time steps) applies to mosaics_rnn only, not {model_name!r}")
        kwargs["t"] = t
    shape = INPUT_SHAPES.get(model_name, (1, 28, 28))
    report = estimate(model_name, tech, shape, conv_mapping, **kwargs)  # type: ignore[arg-type]
    console = console or Console()
    console.print(render_table(report))
    row = paper_row(model_name, t)
    if row is not None and (row, tech.name) in PAPER_TABLE3 and conv_mapping == "im2col":
        paper = PAPER_TABLE3[(row, tech.name)]
        console.print(
            f"paper 000 Table III ({row}, {tech.name}): {paper.total_nj:g} nJ "
            f"(VMM {paper.vmm_nj:g} nJ, neurons {paper.neuron_pj:g} pJ); "
            f"ours {format_energy(report.total_pj)} ({report.total_nj / paper.total_nj - 1:+.1%})"
        )
