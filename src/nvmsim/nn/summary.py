"""``summary(model)``: which layers run on crossbars, on how many arrays, and what share of the
network's multiply-accumulates (MACs) is analog.

Given an ``example`` input the MACs are counted from one forward pass (hooks record each
layer's input and output sizes); without one, every layer counts one read (a convolution's
MACs per output position), so the share is a share of weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from nvmsim.nn.base import AnalogMixin
from nvmsim.nn.convert import DIGITAL_BY_DESIGN
from nvmsim.nn.owned import OwnedArrays, OwnedMatrix


@dataclass(frozen=True)
class LayerRow:
    """One layer: ``arrays`` is ``(groups, row blocks, column blocks)`` for analog layers."""

    name: str
    kind: str
    analog: bool
    shape: tuple[int, ...]
    arrays: tuple[int, int, int] | None
    devices: int
    adcs: int
    macs: int


@dataclass(frozen=True)
class Summary:
    """Printable table of :class:`LayerRow` with the analog share of MACs."""

    rows: tuple[LayerRow, ...]
    per_example: bool

    @property
    def analog_macs(self) -> int:
        return sum(r.macs for r in self.rows if r.analog)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def analog_share(self) -> float:
        """Share of MACs done on crossbars (of weights when no example input was given)."""
        return self.analog_macs / self.total_macs if self.total_macs else 0.0

    @property
    def arrays(self) -> int:
        return sum(math.prod(r.arrays) for r in self.rows if r.arrays)

    @property
    def devices(self) -> int:
        return sum(r.devices for r in self.rows)

    def table(self) -> list[list[str]]:
        """Header and one row of strings per layer (for printing or a report)."""
        head = ["layer", "type", "where", "shape", "arrays", "devices", "ADCs", "MACs"]
        out = [head]
        for r in self.rows:
            arrays = "-"
            if r.arrays:
                g, rb, cb = r.arrays
                arrays = f"{rb}x{cb}" if g == 1 else f"{g} x {rb}x{cb}"
            out.append([
                r.name, r.kind, "analog" if r.analog else "digital",
                "x".join(map(str, r.shape)), arrays, f"{r.devices:,}", f"{r.adcs:,}",
                f"{r.macs:,}",
            ])  # fmt: skip
        return out

    def footer(self) -> str:
        basis = "MACs" if self.per_example else "MACs per read (no example input)"
        return (
            f"{self.arrays} arrays, {self.devices:,} devices; "
            f"{100 * self.analog_share:.1f} % of {self.total_macs:,} {basis} in analog"
        )

    def __str__(self) -> str:
        t = self.table()
        widths = [max(len(row[i]) for row in t) for i in range(len(t[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in t]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join([*lines, self.footer()])


def _analog_row(name: str, m: AnalogMixin, macs: int) -> LayerRow:
    tile = m.tile
    if not tile.programmed:
        m.program()
    xb = m.config.crossbar
    stacks = 1 if xb.mapping == "offset" else 2
    g, rb, cb = tile.groups, tile.row_blocks, tile.col_blocks
    k = xb.weight_slices  # every slice is a full set of arrays with its own ADCs
    devices = stacks * g * tile.rows * tile.cols + (g * tile.rows * cb if stacks == 1 else 0)
    kind = type(m).__name__
    if k > 1:
        kind += f" ({k} slices x {m.config.device.bits} bits)"
    if m.config.converter.input_bits_per_read is not None:
        kind += f" (inputs {m.config.converter.input_bits_per_read} bit/read)"
    return LayerRow(
        name, kind, True, tuple(m.weight.shape), (g * k, rb, cb), devices * k,
        g * rb * tile.cols * k, macs,
    )  # fmt: skip


def _weight_macs(m: nn.Module) -> int:
    """MACs of one read (one output position): the layer's weight count without bias."""
    if isinstance(m, OwnedMatrix):
        return m.weight.numel()
    return sum(p.numel() for n, p in m.named_parameters(recurse=False) if "bias" not in n)


def _arg(args: tuple, kwargs: dict, i: int, name: str):
    return args[i] if len(args) > i else kwargs.get(name)


def _counted_macs(m: nn.Module, args: tuple, kwargs: dict, output) -> int:
    """MACs of one forward call from its input and output sizes."""
    y = output[0] if isinstance(output, tuple) else output
    if isinstance(m, nn.Linear | nn.modules.conv._ConvNd | OwnedMatrix):
        rows = m.weight[0].numel()  # in/groups * prod(kernel)
        return y.numel() * rows
    if isinstance(m, nn.RNNBase):
        x = _arg(args, kwargs, 0, "input")
        if isinstance(x, nn.utils.rnn.PackedSequence):
            x = x.data
        steps = x.numel() // x.shape[-1]  # batch * time
        return steps * _weight_macs(m)
    if isinstance(m, nn.MultiheadAttention):
        q, k = _arg(args, kwargs, 0, "query"), _arg(args, kwargs, 1, "key")
        e = m.embed_dim
        tq, tk = q.numel() // e, k.numel() // k.shape[-1]
        batch = 1 if q.dim() == 2 else q.shape[0 if m.batch_first else 1]
        proj = tq * e * e * 2 + tk * e * (m.kdim + m.vdim)  # q, out; k, v
        products = 2 * tq * (tk // batch) * e  # Q K^T and A V
        return products if isinstance(m, OwnedArrays) else proj + products
    return 0


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Analog layers and digital modules that own parameters (not inside an analog layer);
    an analog recurrent or attention layer is its matrices (and attention's digital
    products)."""
    out = []

    def visit(name: str, m: nn.Module) -> None:
        if isinstance(m, OwnedArrays):
            for key, a in m.arrays.items():
                out.append((f"{name}.{key}" if name else key, a))
            if isinstance(m, nn.MultiheadAttention):  # activation x activation: digital
                out.append((f"{name}.products" if name else "products", m))
            return
        if isinstance(m, AnalogMixin) or isinstance(m, nn.MultiheadAttention | nn.RNNBase):
            out.append((name, m))
            return
        if any(True for _ in m.parameters(recurse=False)):
            out.append((name, m))
        for child_name, child in m.named_children():
            visit(f"{name}.{child_name}" if name else child_name, child)

    visit("", model)
    return out


def summary(model: nn.Module, example: torch.Tensor | tuple | None = None) -> Summary:
    """Per-layer table of ``model``: analog or digital, shape, arrays, devices, ADCs, MACs.

    With ``example`` (an input batch, or a tuple of inputs) the MACs are those of that
    forward pass; without it, each layer counts one read.
    """
    layers = _layers(model)
    macs = {name: 0 for name, _ in layers}
    if example is not None:
        handles = []
        for name, m in layers:

            def hook(mod, args, kwargs, output, name=name):
                macs[name] += _counted_macs(mod, args, kwargs, output)

            handles.append(m.register_forward_hook(hook, with_kwargs=True))
        try:
            with torch.no_grad():
                model(*example) if isinstance(example, tuple) else model(example)
        finally:
            for h in handles:
                h.remove()
    else:  # one read each; attention's products have no weights
        macs = {name: 0 if isinstance(m, OwnedArrays) else _weight_macs(m) for name, m in layers}
    rows = []
    for name, m in layers:
        label = name or type(m).__name__
        if isinstance(m, AnalogMixin):
            rows.append(_analog_row(label, m, macs[name]))
            continue
        if isinstance(m, DIGITAL_BY_DESIGN):
            continue
        if isinstance(m, OwnedArrays):  # an analog attention layer's Q K^T and A V
            conv = m.config.converter
            kind = "Q K^T, A V"
            if conv.attention_products == "quantized":
                kind += f" (DAC {conv.dac_bits or '-'} / ADC {conv.adc_bits or '-'} bits)"
            rows.append(LayerRow(label, kind, False, (), None, 0, 0, macs[name]))
            continue
        w = getattr(m, "weight", None)
        shape = tuple(w.shape) if isinstance(w, torch.Tensor) else (_weight_macs(m),)
        rows.append(LayerRow(label, type(m).__name__, False, shape, None, 0, 0, macs[name]))
    return Summary(tuple(rows), example is not None)
