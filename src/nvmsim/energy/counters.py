"""Operation counters: what one inference reads, drives, converts and activates, per layer.

Forward hooks on every ``nn.Linear`` / ``nn.Conv2d`` (analog or not), on every matrix of an
analog recurrent layer (each read once per time step) and on every activation module record
what the crossbars behind them do while the model runs; the layer classes are not touched.
Gates of recurrent layers are digital functions, not counted as activations. A plain torch
layer is counted as if mapped with ``config`` (default:
``AnalogConfig()``, 256 x 256 arrays, differential pairs, digital bias); an analog layer uses
its own ``.config``. All counts are **per input sample**.

Per read of one crossbar copy with ``R`` rows (inputs, plus one row for an analog bias) and
``C`` columns (outputs), split into ``rb = ceil(R / tile_rows)`` x ``cb = ceil(C / tile_cols)``
arrays, ``d`` devices per weight (2 differential, 1 offset) and ``ref`` reference columns
(one per array column block for the offset mapping, else 0):

====================  ===========================================================
``cell_reads``        ``R * (C * d + ref * cb)``  (every device on a driven row)
``row_drives``        ``R * cb``  (each array drives its rows; DAC conversions)
``adc_conversions``   ``C * rb``  (each row-block array digitises its partial sums)
``array_reads``       ``rb * cb``
``adc_all_columns``   ``rb * cb * tile_cols``  (if every column of an array converts)
``macs``              ``(R - analog bias) * C``
====================  ===========================================================

With bit-sliced weights (``weight_slices = k``) and bit-serial inputs (``P = ceil(dac_bits /
input_bits_per_read)`` reads per input vector) every slice is read once per input plane:
every count above but ``macs`` is multiplied by ``k * P``, and devices by ``k``.

A linear layer is read once per input vector (the Mosaics RNN core ``t`` times per sample).
A convolution depends on ``conv_mapping``:

* ``"im2col"``: one ``(C_in*kh*kw) x C_out`` crossbar per layer, read once per output pixel.
* ``"unrolled"``: one copy of that crossbar per output position, all read once (in
  parallel). Reads, cells, conversions and so the read energy equal im2col's; devices (area,
  programming and update energy) are multiplied by the number of positions; latency is one
  read instead of one per pixel.
* ``"toeplitz"``: the whole layer as one dense ``(C_in*H*W) x (C_out*Ho*Wo)`` matrix (the
  convolution's Toeplitz form, zeros programmed as zero weights), tiled like a dense layer
  and read once: few reads, but every zero cell sits on a driven row and is charged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.nn.activations import BoundedReLU, NoisyActivation
from nvmsim.nn.base import AnalogMixin
from nvmsim.nn.convert import convert
from nvmsim.nn.owned import OwnedMatrix

ConvMapping = Literal["im2col", "unrolled", "toeplitz"]
CONV_MAPPINGS: tuple[str, ...] = ("im2col", "unrolled", "toeplitz")

#: Modules counted as neuron activations (one activation per output element). Softmax and
#: pooling are not neurons here: paper 000 takes their energy as negligible.
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish,
    nn.Softplus, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink, BoundedReLU,
)  # fmt: skip

#: The per-sample count fields of :class:`LayerOps` (summed by :attr:`OpCounts.totals`).
COUNT_FIELDS: tuple[str, ...] = (
    "reads", "cell_reads", "row_drives", "adc_conversions", "adc_all_columns",
    "array_reads", "macs", "activations",
)  # fmt: skip


@dataclass(frozen=True)
class LayerOps:
    """One layer's crossbar geometry and its operation counts per input sample."""

    name: str
    kind: str  # "linear" | "conv2d"
    mapping: str  # "dense" for linear layers, else the conv mapping
    rows: int  # rows of one crossbar copy (inputs, + 1 for an analog bias)
    cols: int  # weight columns of one copy (outputs)
    copies: int  # physical copies of that crossbar
    devices_per_weight: int  # 2 differential, 1 offset
    ref_cols: int  # reference columns per copy (offset mapping: one per array column block)
    row_blocks: int  # arrays along the rows of one copy
    col_blocks: int  # arrays along the columns of one copy
    tile_rows: int
    tile_cols: int
    weights: int  # trainable weight values held on the crossbars, all copies
    devices: int  # physical devices, all copies (zero cells and reference columns included)
    calls: float = 0.0  # forward calls per forward pass of the model (the RNN core: t)
    reads: float = 0.0  # crossbar reads, summed over copies
    cell_reads: float = 0.0
    row_drives: float = 0.0
    adc_conversions: float = 0.0
    adc_all_columns: float = 0.0
    array_reads: float = 0.0
    macs: float = 0.0
    activations: float = 0.0  # outputs passed through an activation after this layer

    @property
    def reads_per_copy(self) -> float:
        return self.reads / self.copies

    @property
    def shape(self) -> str:
        s = f"{self.rows}x{self.cols}"
        return s if self.copies == 1 else f"{s} x{self.copies}"


@dataclass(frozen=True)
class OpCounts:
    """Per-sample operation counts of one model, per layer and in total."""

    layers: tuple[LayerOps, ...]
    conv_mapping: str
    batch: int
    other_activations: float = 0.0  # activations that follow no counted layer
    order: tuple[str, ...] = field(default=())  # layer names in first-call order
    digital_macs: float = 0.0  # products of activations by activations (attention's Q K^T, A V)

    def __iter__(self) -> Iterator[LayerOps]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, name: str) -> LayerOps:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no counted layer {name!r}; layers: {[x.name for x in self.layers]}")

    @property
    def totals(self) -> dict[str, float]:
        """Every count field summed over layers (``activations`` includes the others)."""
        out = {k: sum(getattr(layer, k) for layer in self.layers) for k in COUNT_FIELDS}
        out["activations"] += self.other_activations
        out["devices"] = sum(layer.devices for layer in self.layers)
        out["weights"] = sum(layer.weights for layer in self.layers)
        return out

    def total(self, name: str) -> float:
        return self.totals[name]


@dataclass
class _Geometry:
    """What one forward call of one layer does (before dividing by the batch)."""

    kind: str
    mapping: str
    rows: int
    cols: int
    copies: int
    reads_per_copy: int  # reads of each copy in this call (all samples)
    macs_per_read: int  # per read of one copy
    weights_per_copy: int
    d: int
    ref: int
    tile_rows: int
    tile_cols: int
    slices: int = 1  # bit-sliced weights: a full set of arrays per slice
    planes: int = 1  # bit-serial inputs: reads per input vector

    @property
    def row_blocks(self) -> int:
        return math.ceil(self.rows / self.tile_rows)

    @property
    def col_blocks(self) -> int:
        return math.ceil(self.cols / self.tile_cols)

    def per_read(self) -> dict[str, int]:
        rb, cb = self.row_blocks, self.col_blocks
        n = self.slices * self.planes  # every slice is read once per input plane
        return {
            "cell_reads": n * self.rows * (self.cols * self.d + self.ref * cb),
            "row_drives": n * self.rows * cb,
            "adc_conversions": n * self.cols * rb,
            "adc_all_columns": n * rb * cb * self.tile_cols,
            "array_reads": n * rb * cb,
            "macs": self.macs_per_read,
        }


def _layer_config(layer: nn.Module, default: AnalogConfig) -> AnalogConfig:
    return layer.config if isinstance(layer, AnalogMixin) else default


def _analog_bias(layer: nn.Module, cfg: AnalogConfig) -> int:
    return int(getattr(layer, "bias", None) is not None and cfg.crossbar.bias == "analog")


def _common(cfg: AnalogConfig) -> dict[str, int]:
    xb = cfg.crossbar
    return {
        "d": 2 if xb.mapping == "differential" else 1,
        "ref": 1 if xb.mapping == "offset" else 0,
        "tile_rows": xb.tile_rows,
        "tile_cols": xb.tile_cols,
        "slices": xb.weight_slices,
        "planes": cfg.input_reads,
    }


def _linear_geometry(
    layer: nn.Linear | OwnedMatrix, x: torch.Tensor, cfg: AnalogConfig
) -> _Geometry:
    """A dense read: a linear layer, or one matrix of a recurrent layer (read once per step)."""
    cols, in_features = layer.weight.shape
    vectors = x.numel() // in_features
    ab = _analog_bias(layer, cfg)
    rows = in_features + ab
    return _Geometry(
        kind="linear", mapping="dense", rows=rows, cols=cols, copies=1,
        reads_per_copy=vectors, macs_per_read=in_features * cols,
        weights_per_copy=rows * cols, **_common(cfg),
    )  # fmt: skip


def _valid_taps(layer: nn.Conv2d, h: int, w: int, positions: int) -> int:
    """Pairs (kernel tap, output position) whose tap lands on a real (unpadded) pixel."""
    kh, kw = layer.kernel_size
    if layer.padding_mode != "zeros":  # reflect / replicate / circular: every tap is real
        return kh * kw * positions
    ones = torch.ones(1, 1, h, w, dtype=torch.float64)
    k = torch.ones(1, 1, kh, kw, dtype=torch.float64)
    return int(F.conv2d(ones, k, None, layer.stride, layer.padding, layer.dilation).sum())


def _conv_geometry(
    layer: nn.Conv2d, x: torch.Tensor, y: torch.Tensor, cfg: AnalogConfig, mapping: str
) -> _Geometry:
    g = layer.groups
    batch = int(x.shape[0]) if x.dim() == 4 else 1
    h, w = x.shape[-2], x.shape[-1]
    positions = int(y.shape[-2] * y.shape[-1])
    cin, cout = layer.in_channels // g, layer.out_channels // g
    kh, kw = layer.kernel_size
    k = cin * kh * kw
    ab = _analog_bias(layer, cfg)
    common = _common(cfg)
    if mapping == "im2col":
        return _Geometry(
            kind="conv2d", mapping=mapping, rows=k + ab, cols=cout, copies=g,
            reads_per_copy=batch * positions, macs_per_read=k * cout,
            weights_per_copy=(k + ab) * cout, **common,
        )  # fmt: skip
    if mapping == "unrolled":
        return _Geometry(
            kind="conv2d", mapping=mapping, rows=k + ab, cols=cout, copies=g * positions,
            reads_per_copy=batch, macs_per_read=k * cout,
            weights_per_copy=(k + ab) * cout, **common,
        )  # fmt: skip
    if mapping == "toeplitz":
        nonzero = _valid_taps(layer, h, w, positions) * cin * cout + ab * cout * positions
        return _Geometry(
            kind="conv2d", mapping=mapping, rows=cin * h * w + ab, cols=cout * positions,
            copies=g, reads_per_copy=batch, macs_per_read=k * cout * positions,
            weights_per_copy=nonzero, **common,
        )  # fmt: skip
    raise ValueError(f"unknown conv_mapping {mapping!r}; known: {', '.join(CONV_MAPPINGS)}")


class _Acc:
    """Running sums for one layer."""

    def __init__(self, name: str, geo: _Geometry) -> None:
        self.name, self.geo = name, geo
        self.sums = dict.fromkeys(COUNT_FIELDS, 0.0)
        self.calls = 0

    def add_call(self, geo: _Geometry) -> None:
        reads = geo.copies * geo.reads_per_copy
        self.calls += 1
        self.sums["reads"] += reads
        for key, value in geo.per_read().items():
            self.sums[key] += value * reads

    def result(self, batch: int, passes: int) -> LayerOps:
        geo = self.geo
        per = {k: v / batch for k, v in self.sums.items()}
        per["calls"] = self.calls / passes  # calls per forward pass, not per sample
        devices_per_copy = geo.slices * geo.rows * (geo.cols * geo.d + geo.ref * geo.col_blocks)
        return LayerOps(
            name=self.name, kind=geo.kind, mapping=geo.mapping, rows=geo.rows, cols=geo.cols,
            copies=geo.copies, devices_per_weight=geo.d, ref_cols=geo.ref * geo.col_blocks,
            row_blocks=geo.row_blocks, col_blocks=geo.col_blocks, tile_rows=geo.tile_rows,
            tile_cols=geo.tile_cols, weights=geo.weights_per_copy * geo.copies,
            devices=devices_per_copy * geo.copies, **per,
        )  # fmt: skip


class OpCounter:
    """Context manager that counts the operations of every forward pass run inside it.

    >>> with OpCounter(model) as counter:
    ...     model(x)
    >>> counts = counter.result()

    Counts are divided by the number of samples that went through the model (the leading
    dimension of the first tensor argument of each top-level call), so they are per sample.
    The passes are real (read noise is drawn, "auto" converter ranges calibrate);
    :func:`count_ops` runs on a copy instead.
    """

    def __init__(
        self,
        model: nn.Module,
        conv_mapping: ConvMapping = "im2col",
        config: AnalogConfig | None = None,
    ) -> None:
        if conv_mapping not in CONV_MAPPINGS:
            raise ValueError(
                f"unknown conv_mapping {conv_mapping!r}; known: {', '.join(CONV_MAPPINGS)}"
            )
        self.model = model
        self.conv_mapping = conv_mapping
        self.config = config or AnalogConfig()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._accs: dict[str, _Acc] = {}
        self._order: list[str] = []
        self._last: str | None = None
        self._other = 0.0
        self._digital_macs = 0.0
        self._batch = 0
        self._root_calls = 0

    # ------------------------------------------------------------------ hooks
    def __enter__(self) -> OpCounter:
        names = {m: n for n, m in self.model.named_modules()}
        skip: set[nn.Module] = set()
        for module in self.model.modules():
            if isinstance(module, NoisyActivation):
                if isinstance(module.activation, ACTIVATIONS):
                    skip.add(module.activation)  # counted once, at the wrapper
                else:
                    skip.add(module)
        for module, name in names.items():
            label = name or type(module).__name__
            if isinstance(module, nn.Linear | nn.Conv2d | OwnedMatrix):
                self._handles.append(module.register_forward_hook(self._layer_hook(label)))
            elif isinstance(module, ACTIVATIONS + (NoisyActivation,)) and module not in skip:
                self._handles.append(module.register_forward_hook(self._act_hook))
            elif isinstance(module, nn.MultiheadAttention):
                self._handles.append(module.register_forward_hook(self._attention_hook))
        self._handles.append(self.model.register_forward_pre_hook(self._root_hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _root_hook(self, module: nn.Module, args: tuple) -> None:
        self._root_calls += 1
        for a in args:
            if isinstance(a, torch.Tensor):
                self._batch += int(a.shape[0]) if a.dim() > 0 else 1
                return
        self._batch += 1

    def _layer_hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            x = args[0]
            cfg = _layer_config(module, self.config)
            if isinstance(module, nn.Conv2d):
                geo = _conv_geometry(module, x, output, cfg, self.conv_mapping)
            else:
                geo = _linear_geometry(module, x, cfg)
            if name not in self._accs:
                self._accs[name] = _Acc(name, geo)
                self._order.append(name)
            self._accs[name].add_call(geo)
            self._last = name

        return hook

    def _attention_hook(self, module: nn.MultiheadAttention, args: tuple, output) -> None:
        """Q K^T and A V: ``L * S * E`` multiply-adds each per sequence (digital)."""
        q, k = args[0], args[1]
        seq_dim = 1 if module.batch_first or q.dim() == 2 else 0
        n_q, n_k = q.shape[seq_dim], k.shape[seq_dim]
        seqs = q.numel() // (n_q * module.embed_dim)
        self._digital_macs += 2.0 * seqs * n_q * n_k * module.embed_dim

    def _act_hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        n = float(output.numel())
        if self._last is None:
            self._other += n
        else:
            self._accs[self._last].sums["activations"] += n

    # ------------------------------------------------------------------ result
    def result(self, batch: int | None = None) -> OpCounts:
        """Per-sample counts of everything run so far (``batch`` overrides the sample count)."""
        batch = batch or self._batch
        if batch < 1:
            raise RuntimeError("no forward pass was counted; run the model inside the context")
        passes = max(1, self._root_calls)
        layers = [self._accs[name].result(batch, passes) for name in self._order]
        return OpCounts(
            layers=tuple(layers),
            conv_mapping=self.conv_mapping,
            batch=batch,
            other_activations=self._other / batch,
            order=tuple(self._order),
            digital_macs=self._digital_macs / batch,
        )


def count_ops(
    model: nn.Module,
    x: torch.Tensor,
    conv_mapping: ConvMapping = "im2col",
    config: AnalogConfig | None = None,
) -> OpCounts:
    """Per-sample operation counts of ``model(x)`` (one pass, eval mode, no grad).

    The pass runs on a copy of the model, so counting leaves no trace: no read-noise draws,
    no converter-range calibration, no change of the training flag. ``config`` is the mapping
    assumed for plain ``nn.Linear`` / ``nn.Conv2d`` layers (analog layers use their own); torch
    recurrent and attention layers in the copy are put on arrays with it, so each of their
    matrices is counted as the analog layer would read it.
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] < 1:
        raise ValueError("x must be a tensor with a leading batch dimension of at least 1")
    # recurrent and attention layers are counted per matrix: map the torch ones onto arrays
    # (plain linears and convolutions are counted as they are, with ``config``'s mapping)
    plain = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    work = convert(model, config, exclude=plain, on_unconverted="ignore").eval()
    with torch.no_grad(), OpCounter(work, conv_mapping, config) as counter:
        work(x)
    return counter.result(batch=int(x.shape[0]))


def counts_as_dict(counts: OpCounts) -> Mapping[str, dict[str, float]]:
    """Plain ``{layer: {field: value}}`` (handy for JSON and tests)."""
    return {layer.name: {f.name: getattr(layer, f.name) for f in fields(layer)} for layer in counts}
