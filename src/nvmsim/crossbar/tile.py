"""``AnalogTile``: a weight matrix programmed onto crossbar arrays once, then read many times.

The tile is torch state: the programmed conductances, masks and drift exponents are buffers,
so they follow ``.to(device | dtype)``, ``.double()``, ``.cuda()`` and ``deepcopy``; the read
tensors derived from them are recomputed after every such move, never stored twice. The
buffers are not persistent (a layer's ``state_dict`` keeps torch's keys); a programmed chip is
saved and loaded with :mod:`nvmsim.io.chip`.

A layer's matrix is ``(out, rows)`` with ``rows = in/groups * prod(kernel)`` (plus a bias row
driven at a constant 1 when the bias is analog); each group is its own set of arrays. Rows are
split into physical arrays of at most ``tile_rows`` (:func:`products.row_partition`), columns
into arrays of ``tile_cols``. Each array's column currents are digitised by its own ADC and
the partial sums added digitally. The split only changes results where it matters (ADC on
partial sums, one reference column per array for the offset mapping, dead lines, IR drop).

**One read path.** :meth:`AnalogTile.read` owns the whole read for every layer kind: DAC,
analog bias row, moment-identity noise, per-array partial sums, reference columns, ADC. The
layer only says how to multiply (:class:`products.Product`). For independent Gaussian
per-device read noise, ``y = x @ E[W] + sqrt(x**2 @ Var[W]) * eps`` has exactly the
distribution of reading every device with its own noise; clipping is folded into ``E[W]`` and
``Var[W]`` through the censored-Gaussian moments. When ``Var[W]`` is the same for every weight
(additive noise) the second product is a channel sum of ``x**2``. With an ADC on several row
arrays, the partial sums are one grouped product over the inputs each array sees (no
unfolding). ``read_noise_mode = "sample"`` draws every device explicitly and is the oracle.

Device effects compose in one fixed order (docs/devices.md):

1. ``program()``: target mapping -> quantisation -> device range factor -> programming error
   -> stuck-at faults -> dead rows / columns -> clip (drawn once);
2. ``drift_to(t)``: power-law drift -> retention (deterministic given the programmed state);
3. every read: read noise (Gaussian read noise and 1/f noise, random telegraph noise) -> clip
   -> global drift compensation (a gain on the whole tile) -> ADC.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.crossbar import adc as adc_models
from nvmsim.crossbar import converters, mapping, normals, workers
from nvmsim.crossbar.products import Product, row_partition
from nvmsim.devices import drift as drift_fn
from nvmsim.devices import faults, levels, noise

#: Programmed state: buffers that define one chip instance (saved by ``nvmsim.nn.chip``).
STATE = (
    "g0", "g_ref0", "range_factor", "range_factor_ref", "dead", "dead_ref", "nu", "nu_ref",
    "dac_range", "adc_range", "cal_local", "cal_local_ref", "adc_gain", "adc_offset", "adc_table",
)  # fmt: skip
#: Scalars of the programmed state.
SCALARS = ("wmax", "scale", "time", "cal0")

#: Partial sums per chunk of a batched read (4 MB of float32: in cache, no page faults).
CHUNK_ELEMENTS = 1 << 20

_CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}

#: Read state derived from ``STATE`` (and scalars): plain attributes, recomputed after every
#: move, set without ``nn.Module.__setattr__``'s bookkeeping (hardware-aware training sets
#: them for every layer at every step).
_DERIVED = frozenset({
    "g", "g_ref", "_bounds", "_bounds_ref", "noisy", "compensation", "w_mean", "w_var",
    "var_const", "ref_var", "_rw_mean", "_rb_mean", "_rw_var", "_rb_var", "_rw_ref", "_rb_ref",
    "_blocks_cache", "time", "wmax", "scale", "cols", "rows", "cal0", "programmed",
    "_alpha", "_alpha_ref", "_adc_index", "adc_unit", "_saturated", "_integer_weights",
    "_exact_cache", "held",
})  # fmt: skip


def _table(cfg) -> dict:
    """Keyword arguments of a conductance-dependent noise (table / polynomial)."""
    if cfg.kind == "table":
        return {"g_points": cfg.g_points, "sigma_points": cfg.sigma_points}
    if cfg.kind == "polynomial":
        return {"coeffs": cfg.coeffs}
    return {}


class _Sqrt(torch.autograd.Function):
    """``sqrt`` whose gradient is 0 where the value is 0 (a read variance of an all-zero
    input patch: the subgradient of a norm at 0), where plain ``sqrt`` gives 0 / 0."""

    @staticmethod
    def forward(ctx, v):  # noqa: D102
        out = v.sqrt()
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        (out,) = ctx.saved_tensors
        return torch.where(out > 0, g / (2 * out), 0.0)


def _std(var: torch.Tensor) -> torch.Tensor:
    """Square root of a read variance: in place without gradients, else :class:`_Sqrt`."""
    return _Sqrt.apply(var) if var.requires_grad else var.sqrt_()


def _noise(var: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``sqrt(var) * eps``: in place without gradients (the square root's output is saved
    for its backward pass, so it is not scaled in place when ``var`` needs a gradient)."""
    return _std(var) * eps if var.requires_grad else var.sqrt_().mul_(eps)


def _straight_through(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``q`` in the forward pass, the gradient of ``x`` in the backward pass: the
    straight-through estimator of a converter's rounding (``x`` keeps its saturation)."""
    return x + (q - x).detach()


def add_reads(
    reads: list[tuple[torch.Tensor, torch.Tensor | None]],
    generator: torch.Generator | None,
    stream: normals.Stream,
) -> torch.Tensor:
    """The digital sum of independent reads given by their moments
    (:meth:`AnalogTile.read_moments`, same groups and columns): the summed means plus one
    draw with the summed variance, which has exactly the distribution of drawing each read's
    noise and adding the reads."""
    mean = reads[0][0]
    for m, _ in reads[1:]:
        mean = mean + m
    parts = [v for _, v in reads if v is not None]
    if not parts:
        return mean
    var = parts[0]
    for v in parts[1:]:
        var = var + v
    yg = mean.view(mean.shape[0], var.shape[1], -1, *mean.shape[2:])
    eps = normals.standard_normal(yg, generator, stream)
    if yg.requires_grad or var.requires_grad:
        return (yg + _std(var) * eps).view(mean.shape)
    # in place only on the sums, which are new tensors; a caller's own read is kept
    std = _std(var) if len(parts) > 1 else var.sqrt()
    return (yg.addcmul_(std, eps) if len(reads) > 1 else yg + std * eps).view(mean.shape)


class NotProgrammedError(RuntimeError):
    """Raised when a tile is read before :meth:`AnalogTile.program`."""


class NonFiniteError(ValueError):
    """A programmed, derived or read quantity is NaN or inf; the message names it and the
    likely cause."""


def all_finite(t: torch.Tensor) -> bool:
    """Whether every element is finite: one sum, then an exact check only if it is not."""
    t = t.detach()
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _all_finite(*values: torch.Tensor | float | None) -> bool:
    """Whether every given tensor and number is finite, with one check for all (a sum of
    sums: an overflow or a NaN anywhere makes it non-finite)."""
    total = 0.0
    for v in values:
        if isinstance(v, torch.Tensor):
            v = v.detach().sum()
        total = total + (0.0 if v is None else v)
    return math.isfinite(total) if isinstance(total, float) else bool(torch.isfinite(total))


def require_finite(value: torch.Tensor | float | None, what: str, cause: str) -> None:
    """Raise :class:`NonFiniteError` unless ``value`` (a tensor, a number or ``None``) is
    finite."""
    if value is None:
        return
    if isinstance(value, torch.Tensor):
        if all_finite(value):
            return
        dtype = str(value.dtype).removeprefix("torch.")
    elif math.isfinite(value):
        return
    else:
        dtype = "float64"
    raise NonFiniteError(f"{what} overflows {dtype}: {cause}")


def _noise_cause(name: str, cfg) -> str:
    """The config field that sets a conductance-dependent noise's size."""
    if cfg.kind == "table":
        return f"device.{name}.sigma_points (max {max(cfg.sigma_points):g})"
    if cfg.kind == "polynomial":
        return f"device.{name}.coeffs = {cfg.coeffs}"
    return f"device.{name}.sigma = {cfg.sigma:g}"


def _too_large(parts: list[str], fallback: str) -> str:
    return (" or ".join(parts) + " is too large") if parts else fallback


class AnalogTile(nn.Module):
    """Conductances of one layer's crossbar matrix and the periphery that reads them."""

    def __init__(
        self,
        config: AnalogConfig | None = None,
        product: Product | None = None,
        bias_row: bool = False,
    ) -> None:
        super().__init__()
        self.config = config or AnalogConfig()
        self.product = product or Product()
        #: the ADC model of this tile's converters (the config is frozen: built once)
        self.adc_design = adc_models.AdcDesign(**self.config.converter.adc_model.model_dump())
        self.bias_row = bool(bias_row)
        self.programmed = False
        self.held = False  # reading one held draw of every device (see hold_read)
        self.name = ""  # the layer's name in its model, for messages (set by ``convert``)
        self.rows = self.cols = 0
        self.time = 0.0
        self.wmax = self.scale = 1.0
        self.cal0: float | None = None
        for name in STATE:
            self.register_buffer(name, None, persistent=False)
        self._blocks_cache: dict | None = None
        self._exact_cache: dict | None = None
        self._integer_weights = False
        self._adc_index: torch.Tensor | None = None
        self._saturated: torch.Tensor | None = None  # per sample, set by a managed read
        # ADC step in integer units (bit-sliced / bit-serial reads): the calibrated LSB is
        # rounded up to this unit times a power of two, so enough bits digitise exactly
        self.adc_unit: float | None = None
        # What the input's gradient includes under read noise (a training choice, not chip
        # state): "sample" (the noise term too) or "expected" (the expected read only).
        self.noise_gradient: Literal["sample", "expected"] = "sample"

    def __setattr__(self, name: str, value) -> None:
        if name in _DERIVED:
            object.__setattr__(self, name, value)
        elif name in STATE and (value is None or type(value) is torch.Tensor):
            self._buffers[name] = value  # a registered buffer (programming sets every one)
        else:
            super().__setattr__(name, value)

    # ------------------------------------------------------------------ geometry
    @property
    def groups(self) -> int:
        return self.product.groups

    @property
    def _fmt(self) -> torch.memory_format:
        """Memory format of reads: channels-last for 2-d and 3-d convolutions."""
        return _CHANNELS_LAST.get(self.product.dims, torch.contiguous_format)

    @property
    def kernel_rows(self) -> int:
        """Rows per group that carry weights (without the bias row)."""
        return self.rows - int(self.bias_row)

    def partition(self) -> tuple[tuple[int, int], ...]:
        """Row ranges of the physical arrays of each group."""
        xb = self.config.crossbar
        unit = self.product.unit if xb.conv_rows == "channel" else 1
        return row_partition(self.kernel_rows, xb.tile_rows, unit, self.bias_row)

    @property
    def row_blocks(self) -> int:
        return len(self.partition())

    @property
    def col_blocks(self) -> int:
        return math.ceil(self.cols / self.config.crossbar.tile_cols)

    @property
    def in_features(self) -> int:
        return self.rows * self.groups

    @property
    def out_features(self) -> int:
        return self.cols * self.groups

    # ------------------------------------------------------------------ programming
    def program(
        self,
        weight: torch.Tensor,
        generator: torch.Generator | None = None,
        wmax: float | None = None,
        hold: torch.Generator | None = None,
    ) -> None:
        """Map ``weight`` (out, rows) to conductances and write them, drawing everything that
        is fixed at programming time once from ``generator`` (on the weight's device).
        ``wmax`` fixes the weight of the top conductance (else ``max|W|`` or its percentile).
        ``hold``: read with one held draw of the devices' read noise from this generator
        (:meth:`hold_read`), without deriving the expected read it would replace.

        Order: target mapping -> quantisation (``bits`` / ``levels``) -> device range factor
        (``range_std``) -> programming error -> stuck-at faults -> dead rows / columns ->
        clip. Random draws happen only for effects that are on, so turning an effect off
        leaves every other draw unchanged.
        """
        cfg, dev = self.config, self.config.device
        w = weight.detach()
        if not w.is_floating_point():
            w = w.to(torch.float32)
        if w.dim() != 2:
            raise ValueError(f"weight must be 2-D (out, rows), got shape {tuple(w.shape)}")
        if w.shape[0] % self.groups:
            raise ValueError(f"{w.shape[0]} outputs do not split into {self.groups} groups")
        if not all_finite(w):
            raise NonFiniteError("weight contains NaN or inf; cannot program it")
        g_min = dev.g_min
        pe = dev.programming_error
        if pe.kind == "weight":
            w = noise.weight_error(w, pe.sigma, generator)
            require_finite(w, "weight with programming error", self._programming_cause())
        self.cols, self.rows = w.shape[0] // self.groups, w.shape[1]
        # (G, rows, cols): rows of the crossbar are inputs
        wt = w.reshape(self.groups, self.cols, self.rows).transpose(1, 2).contiguous()
        self.wmax = (
            mapping.weight_range(wt, cfg.crossbar.weight_clip_percentile)
            if wmax is None
            else float(wmax)
        )
        self.scale = mapping.scale(cfg.crossbar.mapping, self.wmax, g_min)
        g = mapping.to_conductances(wt, cfg.crossbar.mapping, self.wmax, g_min)
        g, self.range_factor = self._write(g, generator)
        ref, self.range_factor_ref = None, None
        if cfg.crossbar.mapping == "offset":
            shape = (self.groups, self.rows, self.col_blocks)
            ref = torch.full(shape, mapping.reference_level(g_min), dtype=w.dtype, device=w.device)
            ref, self.range_factor_ref = self._write(ref, generator)
        self.dead, self.dead_ref = self._dead_lines(
            g.shape[0], ref is not None, generator, w.device
        )
        if self.dead is not None and dev.dead_state == "gmin":
            g = torch.where(self.dead, self._dev_bound(g_min, self.range_factor), g)
            if ref is not None:
                ref = torch.where(self.dead_ref, self._dev_bound(g_min, self.range_factor_ref), ref)
        self.g0 = self._mask(noise.clip_to(g, *self._clip_bounds(self.range_factor)), "dead")
        self.g_ref0 = None
        if ref is not None:
            bounds = self._clip_bounds(self.range_factor_ref)
            self.g_ref0 = self._mask(noise.clip_to(ref, *bounds), "dead_ref")
        require_finite(self.g0, "programmed conductance", self._programming_cause())
        require_finite(self.g_ref0, "reference conductance", self._programming_cause())
        self.nu = self.nu_ref = None
        if dev.drift_nu > 0 or dev.drift_nu_std > 0:
            kw = {"dtype": w.dtype, "device": w.device}
            self.nu = drift_fn.draw_nu(
                self.g0.shape, dev.drift_nu, dev.drift_nu_std, generator, **kw
            )
            if self.g_ref0 is not None:
                shape = self.g_ref0.shape
                self.nu_ref = drift_fn.draw_nu(
                    shape, dev.drift_nu, dev.drift_nu_std, generator, **kw
                )
        self.dac_range = self.adc_range = None
        self.cal_local = self.cal_local_ref = None
        self.cal0 = None
        self._draw_adc(generator, w)
        self.programmed = True
        self.drift_to(0.0, hold)

    def _write(
        self, g: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Quantise, scale by each device's range factor, add programming error, stick."""
        dev = self.config.device
        g_min = dev.g_min
        if dev.levels is None and dev.level_spacing == "uniform":
            g = levels.quantize(g, dev.bits, g_min)
        else:
            lv = levels.level_set(dev.bits, g_min, dev.level_spacing, dev.levels)
            g = levels.quantize_to(g, lv)
        s = None
        if dev.range_std > 0:  # lognormal factor, median 1: [Gmin, Gmax] -> s * [Gmin, Gmax]
            eps = torch.randn(g.shape, generator=generator, dtype=g.dtype, device=g.device)
            s = torch.exp(dev.range_std * eps)
            g = g * s
        pe = dev.programming_error
        if pe.kind != "weight" and pe.active:
            g = noise.add_noise(g, pe.kind, pe.sigma, generator, **_table(pe))
        g = faults.stuck_at(
            g, dev.stuck_at_gmin, dev.stuck_at_gmax,
            self._dev_bound(g_min, s), self._dev_bound(1.0, s), generator,
        )  # fmt: skip
        return g, s

    def _adc_tables(self) -> int:
        """Converters with their own threshold table: one design (uniform), one ramp per
        array, or one SAR ADC per ``columns_per_adc`` columns of each array."""
        d = self.adc_design
        arrays = self.groups * self.row_blocks * self.col_blocks
        if d.kind == "uniform":
            return 1
        if d.kind == "ramp":
            return arrays
        width = min(self.cols, self.config.crossbar.tile_cols)
        return arrays * math.ceil(width / d.columns_per_adc)

    def adc_index(self, device: torch.device) -> torch.Tensor:
        """Threshold table of every physical column: ``(G, n_arrays, cols)`` (cached)."""
        if self._adc_index is not None and self._adc_index.device == device:
            return self._adc_index
        d, tc = self.adc_design, self.config.crossbar.tile_cols
        g, nb, cb = self.groups, self.row_blocks, self.col_blocks
        c = torch.arange(self.cols, device=device)
        array = (torch.arange(g * nb, device=device).view(g, nb, 1) * cb) + (c // tc)
        if d.kind == "uniform":
            idx = torch.zeros_like(array)
        elif d.kind == "ramp":
            idx = array
        else:
            per = math.ceil(min(self.cols, tc) / d.columns_per_adc)
            idx = array * per + (c % tc) // d.columns_per_adc
        self._adc_index = idx.expand(g, nb, self.cols).contiguous()
        return self._adc_index

    def _draw_adc(self, generator: torch.Generator | None, like: torch.Tensor) -> None:
        """ADC mismatch of this chip instance (threshold tables, column gain and offset),
        drawn after everything else so that an ideal ADC leaves every other draw unchanged."""
        self.adc_gain = self.adc_offset = self.adc_table = None
        self._adc_index = None
        bits, d = self.config.converter.adc_bits, self.adc_design
        if bits is None or d.ideal:
            return
        kw = {"dtype": like.dtype, "device": like.device}
        shape = (self.groups, self.row_blocks, self.cols)
        if d.has_table:
            self.adc_table = adc_models.thresholds(d, bits, self._adc_tables(), generator, **kw)
        if d.gain_std > 0:
            eps = torch.randn(shape, generator=generator, **kw)
            self.adc_gain = 1.0 + d.gain_std * eps
        if d.offset_std > 0:
            if d.kind == "sar":  # one comparator per SAR ADC
                per_adc = torch.randn(self._adc_tables(), generator=generator, **kw)
                self.adc_offset = d.offset_std * per_adc[self.adc_index(like.device)]
            else:
                self.adc_offset = d.offset_std * torch.randn(shape, generator=generator, **kw)

    def _programming_cause(self) -> str:
        """The programming fields that can make conductances overflow."""
        dev = self.config.device
        pe = dev.programming_error
        parts = [_noise_cause("programming_error", pe)] if pe.active else []
        if dev.range_std > 0:
            parts.append(f"device.range_std = {dev.range_std:g}")
        return _too_large(parts, "the weights are too large")

    def _read_cause(self) -> str:
        """The read-noise fields (else the programming fields) behind an overflowing read."""
        dev = self.config.device
        parts = [_noise_cause("read_noise", dev.read_noise)] if dev.read_noise.active else []
        if dev.flicker_noise.active:
            parts.append(f"device.flicker_noise.k = {dev.flicker_noise.k:g}")
        return _too_large(parts, self._programming_cause())

    @staticmethod
    def _dev_bound(value: float, s: torch.Tensor | None) -> float | torch.Tensor:
        """A nominal conductance in one device's own range."""
        return value if s is None else value * s

    def _mask(self, g: torch.Tensor, dead_name: str) -> torch.Tensor:
        """Open (dead) devices carry no current."""
        dead = getattr(self, dead_name)
        if dead is None or self.config.device.dead_state != "open":
            return g
        return g.masked_fill(dead, 0.0)

    def _clip_bounds(self, s: torch.Tensor | None) -> tuple[noise.Bound, noise.Bound]:
        dev = self.config.device
        return noise.clip_bounds(dev.clip, self._dev_bound(dev.g_min, s), self._dev_bound(1, s))

    def _retention_target(self, s: torch.Tensor | None) -> float | torch.Tensor:
        dev = self.config.device
        target = dev.retention.target
        if target == "gmin":
            return self._dev_bound(dev.g_min, s)
        if target == "mid":
            return self._dev_bound((1.0 + dev.g_min) / 2, s)
        return float(target)

    def _physical_rows(self, device: torch.device) -> tuple[torch.Tensor, int]:
        """Each row's position on its array's word lines, laid out array after array."""
        tr = self.config.crossbar.tile_rows
        idx = [b * tr + r - s for b, (s, e) in enumerate(self.partition()) for r in range(s, e)]
        return torch.tensor(idx, device=device), max(idx, default=-1) + 1

    def _dead_lines(
        self,
        n_stacks: int,
        with_ref: bool,
        generator: torch.Generator | None,
        dvc: torch.device,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Devices on dead rows / columns, per physical array: each stack (G+, G-) and each
        group is its own set of arrays; with the offset mapping an array's reference column is
        its last column (a dead row kills its reference device too)."""
        dev, xb = self.config.device, self.config.crossbar
        if dev.dead_rows == 0 and dev.dead_cols == 0:
            return None, None
        tc, n_arrays = xb.tile_cols, self.col_blocks
        width = tc + 1 if with_ref else tc
        j = torch.arange(self.cols, device=dvc)
        gcols = (j // tc) * width + j % tc
        rcols = torch.arange(n_arrays, device=dvc) * width + tc
        prow, n_phys = self._physical_rows(dvc)
        masks, ref_masks = [], []
        for k in range(n_stacks):
            per_group = []
            for _ in range(self.groups):
                m = faults.dead_line_mask(
                    n_phys, n_arrays * width, xb.tile_rows, width,
                    dev.dead_rows, dev.dead_cols, generator, device=dvc,
                )[prow]  # fmt: skip
                per_group.append(m[:, gcols])
                if k == 0 and with_ref:
                    ref_masks.append(m[:, rcols])
            masks.append(torch.stack(per_group))
        return torch.stack(masks), (torch.stack(ref_masks) if with_ref else None)

    def drift_to(self, t_seconds: float, hold: torch.Generator | None = None) -> None:
        """Let the programmed conductances evolve to ``t_seconds`` after programming: power-law
        drift, then retention loss (relaxation towards its target); ``hold`` as in
        :meth:`program`."""
        self._require_programmed()
        if not (t_seconds >= 0 and math.isfinite(t_seconds)):
            raise ValueError(f"t_seconds must be finite and >= 0, got {t_seconds}")
        self.time = float(t_seconds)
        self._derive(hold)

    def _derive(self, hold: torch.Generator | None = None) -> None:
        """Everything a read needs, from the programmed state at ``self.time`` (with ``hold``:
        a held read drawn from it; the expected read is derived first only where drift
        compensation takes its factors from it)."""
        dev = self.config.device
        tau = dev.retention.tau
        self._bounds = self._clip_bounds(self.range_factor)
        g_inf = self._retention_target(self.range_factor)
        g = drift_fn.evolve(self.g0, self.time, self.nu, dev.drift_t0, tau, g_inf)
        self.g = g if g is self.g0 else self._mask(g, "dead")
        self.g_ref = ref = self.g_ref0
        if ref is not None:
            self._bounds_ref = self._clip_bounds(self.range_factor_ref)
            g_inf = self._retention_target(self.range_factor_ref)
            ref = drift_fn.evolve(ref, self.time, self.nu_ref, dev.drift_t0, tau, g_inf)
            self.g_ref = ref if ref is self.g_ref0 else self._mask(ref, "dead_ref")
        if hold is None or dev.drift_compensation:
            self._prepare_reads()
        if hold is not None:
            self.hold_read(hold)

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        if self.programmed:  # derived read tensors follow the state: recompute, do not cast
            self._derive()
        return self

    # ------------------------------------------------------------------ read statistics
    def _gauss_std(self, g: torch.Tensor) -> torch.Tensor | None:
        """Std of the Gaussian per-read noise (read noise and 1/f together), or ``None``."""
        dev = self.config.device
        rn, fl = dev.read_noise, dev.flicker_noise
        std = noise.noise_std(g, rn.kind, rn.sigma, **_table(rn)) if rn.active else None
        if fl.active:
            f = noise.flicker_std(g, fl.k, fl.f_min, fl.f_max)
            std = f if std is None else (std.square() + f.square()).sqrt()
        return std

    def _read_effects(self) -> tuple[bool, bool]:
        """(any per-read effect on, reads are random)."""
        dev = self.config.device
        gauss = dev.read_noise.active or dev.flicker_noise.active
        tn = dev.telegraph_noise
        return gauss or tn.active, gauss or (tn.active and tn.p < 1)

    def _moments(
        self, g: torch.Tensor, bounds: tuple[noise.Bound, noise.Bound]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact per-device mean and variance of one read (see :func:`noise.read_moments`)."""
        tn = self.config.device.telegraph_noise
        std = self._gauss_std(g)
        if std is None:
            std = torch.zeros_like(g)
        shift = noise.telegraph_shift(g, tn.kind, tn.delta) if tn.active else None
        return noise.read_moments(g, std, *bounds, shift=shift, p=tn.p)

    def _device_moments(
        self, g: torch.Tensor, bounds: tuple[noise.Bound, noise.Bound], dead: str, effects: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean and variance (``None`` if reads are not random) of one read of devices ``g``."""
        if not effects:
            return g, None
        m, v = self._moments(g, bounds)
        return self._mask(m, dead), (self._mask(v, dead) if self.noisy else None)

    def hold_read(self, generator: torch.Generator | None) -> None:
        """Draw one read of every device (Gaussian and 1/f read noise, telegraph noise,
        clipping, open devices; the oracle's per-device draw) and read with it, without
        noise, until the next programming, drift or move: the read noise of a whole forward
        pass at once, as hardware-aware training injects it per mini-batch (Joshi et al.,
        Nat. Commun. 11, 2473 (2020)). Drift compensation keeps the expected read's
        factors, as its calibration read is noise-free."""
        self._require_programmed()
        m = self._sample_devices(self.g, 1, self._bounds, "dead", generator)[0]
        rm = None
        if self.g_ref is not None:
            r = self._sample_devices(self.g_ref, 1, self._bounds_ref, "dead_ref", generator)
            rm = r[0]
        self._prepare_reads(held=(m, rm))

    def _prepare_reads(self, held: tuple[torch.Tensor, torch.Tensor | None] | None = None) -> None:
        """Expected weight and per-weight read variance in weight units, (G, rows, cols);
        ``held``: one drawn read of every device and reference device, read as it is."""
        dev = self.config.device
        effects, self.noisy = self._read_effects()
        self.held = held is not None
        v = rv = ref_var = None
        if held is not None:
            (m, rm), self.noisy = held, False
        else:
            m, v = self._device_moments(self.g, self._bounds, "dead", effects)
            rm = None
            if self.g_ref is not None:
                rm, rv = self._device_moments(self.g_ref, self._bounds_ref, "dead_ref", effects)
        if self.config.crossbar.parasitics:
            m, rm = self._with_ir_drop(m, rm)
        if dev.drift_compensation in ("column", "array"):
            if held is None:
                self._alpha, self._alpha_ref = self._local_compensation(m, rm)
            a, a_ref = self._alpha, self._alpha_ref
            m, v = m * a, (None if v is None else v * a.square())
            if rm is not None:
                rm, rv = rm * a_ref, (None if rv is None else rv * a_ref.square())
        else:
            self._alpha = self._alpha_ref = None
        var = None if v is None else v.sum(0)
        if rv is not None:
            ref_var = rv * self.scale**2
        mean = m[0] - m[1] if m.shape[0] == 2 else m[0]
        if rm is not None:
            mean = mean - self.expand_ref(rm)
        mean = mean * self.scale
        global_ = dev.drift_compensation in (True, "global")
        if held is None or not global_:  # a held read keeps the expected read's factor
            self.compensation = self._drift_compensation(mean) if global_ else 1.0
        alpha = self.compensation
        if alpha != 1.0:
            mean = mean * alpha
            var = None if var is None else var * alpha**2
            ref_var = None if ref_var is None else ref_var * alpha**2
        self.w_mean = mean.contiguous()  # (G, rows, cols)
        self.var_const: float | None = None
        self.w_var = None
        if var is not None:
            var = var * self.scale**2
            vmin, vmax = (float(v) for v in torch.aminmax(var)) if var.numel() else (0.0, 0.0)
            if vmax - vmin <= self.config.moment_rtol * vmax:
                self.var_const = float(var.mean())
            else:
                self.w_var = var.contiguous()
        self.ref_var = ref_var
        if not _all_finite(self.w_mean, self.w_var, self.ref_var, self.var_const):
            cause = f"{self._read_cause()} (weight range Wmax = {self.wmax:.3g})"
            require_finite(self.w_mean, "expected weight", cause)
            require_finite(self.var_const, "read-noise variance", cause)
            require_finite(self.w_var, "read-noise variance", cause)
            require_finite(self.ref_var, "reference-column read-noise variance", cause)
        # Read weights in the product's layout: (out, kernel_rows) and the bias row (out,).
        self._rw_mean, self._rb_mean = self._read_weight(self.w_mean)
        self._rw_var, self._rb_var = self._read_weight(self.w_var)
        self._rw_ref, self._rb_ref = self._read_weight(self.ref_var)
        self._blocks_cache = None
        self._exact_cache = None
        w = self.w_mean  # whole-number weights matter only to integer reads of sliced tiles
        integer = self.adc_unit is not None and not self.noisy
        self._integer_weights = integer and bool(torch.equal(w, torch.round(w)))

    def _read_weight(
        self, m: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(G, rows, c) -> the product's weight ``(G*c, kernel_rows)`` and bias row ``(G*c,)``."""
        if m is None:
            return None, None
        k = self.kernel_rows
        w = m[:, :k].transpose(1, 2).reshape(-1, k)
        b = m[:, k].reshape(-1).contiguous() if self.bias_row else None
        return self.product.kernel_weight(w.contiguous()), b

    def _drift_compensation(self, mean: torch.Tensor) -> float:
        """Global drift compensation: the tile reads a calibration input (all ones) right after
        programming and again now; outputs are multiplied by the ratio of the summed absolute
        column outputs, ``sum|y(0)| / sum|y(t)|``. The calibration read is the expected
        (noise-free) read: averaged over all rows and columns its noise is negligible."""
        c = float(mean.double().sum(1).abs().sum())
        if self.cal0 is None:
            self.cal0 = c
        return self.cal0 / c if c > 0 and self.cal0 > 0 else 1.0

    def _local_compensation(
        self, m: torch.Tensor, rm: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-column or per-array drift compensation: each physical column (``"column"``)
        or each array (``"array"``: the columns of one row block x column block, its
        reference column included) is read with an all-ones input right after programming and
        again now; its conductances are scaled by the ratio of the two currents (1 where a
        current is 0). The calibration reads are the expected (noise-free) reads. Returns the
        factors for ``m`` (stacks, G, rows | 1, cols) and for the reference ``rm``."""
        per_array = self.config.device.drift_compensation == "array"
        if per_array:
            rb = torch.zeros(self.rows, dtype=torch.long, device=m.device)
            for j, (s, e) in enumerate(self.partition()):
                rb[s : min(e, self.rows)] = j
            cb = torch.arange(self.cols, device=m.device) // self.config.crossbar.tile_cols
            nb_r, nb_c = self.row_blocks, self.col_blocks

            def array_sums(t: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
                """(..., rows, c) -> sums per (row block, column block): (..., nb_r, nb_c)."""
                idx = (rb[:, None] * nb_c + cols[None, :]).expand(t.shape[-2:]).reshape(-1)
                flat = t.double().reshape(*t.shape[:-2], -1)
                out = flat.new_zeros(*t.shape[:-2], nb_r * nb_c).index_add_(-1, idx, flat)
                return out.view(*t.shape[:-2], nb_r, nb_c)

            now = array_sums(m, cb)  # (stacks, G, nb_r, nb_c)
            if rm is not None:  # the reference column belongs to its array
                now = now + array_sums(rm, torch.arange(rm.shape[-1], device=m.device))
            now_ref = None
        else:
            now = m.double().sum(-2, keepdim=True)  # (stacks, G, 1, cols)
            now_ref = None if rm is None else rm.double().sum(-2, keepdim=True)
        if self.cal_local is None:  # stored in the tile's dtype: a saved chip reads the same
            self.cal_local = now.to(m.dtype)
            self.cal_local_ref = None if now_ref is None else now_ref.to(m.dtype)

        def ratio(cal: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
            cal = cal.double()
            return torch.where(cur > 0, cal / cur.clamp_min(1e-300), torch.ones_like(cur))

        a = ratio(self.cal_local, now)
        if per_array:  # back to every device: (stacks, G, rows, cols), references (G, rows, nb)
            a_ref = None if rm is None else a[0][..., rb, :].to(m.dtype)
            return a[..., rb, :][..., cb].to(m.dtype), a_ref
        a_ref = None if rm is None else ratio(self.cal_local_ref, now_ref).to(m.dtype)
        return a.to(m.dtype), a_ref

    def _with_ir_drop(
        self, m: torch.Tensor, ref: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Replace mean conductances by each array's exact effective matrix (IR drop).

        Every array (row range of the partition x ``tile_cols`` columns) of each conductance
        stack and group is one physical array; with the offset mapping its reference column is
        the array's last column. Read noise keeps the variance of the devices themselves
        (first order).
        """
        from nvmsim.crossbar.parasitics import effective_matrix

        xb = self.config.crossbar
        g_s = self.config.device.g_max_siemens
        tc = xb.tile_cols
        m_eff = torch.empty_like(m)
        ref_eff = None if ref is None else torch.empty_like(ref)
        for k in range(m.shape[0]):
            for gi in range(self.groups):
                for r0, r1 in self.partition():
                    for a, c0 in enumerate(range(0, self.cols, tc)):
                        block = m[k, gi, r0:r1, c0 : c0 + tc]
                        if ref is not None:
                            block = torch.cat([block, ref[gi, r0:r1, a : a + 1]], dim=1)
                        t = effective_matrix(
                            block.double().cpu() * g_s, xb.r_row, xb.r_col,
                            both_ends=xb.both_ends, r_access=xb.r_access,
                        ) / g_s  # fmt: skip
                        t = t.to(dtype=m.dtype, device=m.device)
                        if ref is not None:
                            if k == 0:
                                ref_eff[gi, r0:r1, a] = t[:, -1]
                            t = t[:, :-1]
                        m_eff[k, gi, r0:r1, c0 : c0 + tc] = t
        return m_eff, ref_eff

    def expand_ref(self, ref: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Per-array reference values (on axis ``dim``) broadcast to the columns they serve."""
        ref = ref.repeat_interleave(self.config.crossbar.tile_cols, dim=dim)
        return ref.narrow(dim, 0, self.cols)

    def _require_programmed(self) -> None:
        if not self.programmed:
            raise NotProgrammedError("tile read before program(); call .program() first")

    # ------------------------------------------------------------------ reading
    def read(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        bias: torch.Tensor | None = None,
        apply_dac: bool = True,
        dac_range: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One analog read: ``x`` is ``(B, in)`` or ``(B, C_in, *spatial)`` as the product
        takes it; returns ``(B, out[, *out_spatial])`` plus a digital ``bias``.

        Every output (every position of a convolution) is one read of the arrays with fresh
        noise. ``apply_dac=False`` is for callers that quantised the inputs already.
        ``dac_range`` fixes the DAC's range for this read (a learned range; with a gradient
        it gets the clamp's). A non-finite output of finite inputs raises
        :class:`NonFiniteError`.

        Gradients: with ``noise_gradient = "sample"`` (the default) ``x`` gets the gradient
        of this sampled read, noise term included (the reparameterisation gradient: it also
        teaches a network to lower its own read-noise variance); with ``"expected"`` only
        that of the expected read (the programmed, drifted mean weights), as aihwkit's ideal
        backward pass, and faster. DAC and ADC rounding is straight-through.
        """
        conv = self.config.converter
        x_in, x = x, self._prepared(x)
        if dac_range is not None:
            if conv.noise_management != "none":
                raise ValueError("a fixed DAC range and noise management exclude each other")
            dac_range = dac_range.to(x.dtype)
            self.dac_range = dac_range.detach().clone()
        if conv.noise_management == "none" and conv.bound_management == "none":
            y = self._read_once(x, generator, apply_dac, dac_range)
        else:
            y = self._managed_read(x, generator, apply_dac)
        y = self._plus_bias(y, bias)
        if not all_finite(y) and all_finite(x_in):  # non-finite inputs may give anything
            self._overflowed(x_in, y)
        return y

    def _prepared(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` checked against the arrays' rows, in the tile's dtype; convolutions run
        channels-last (oneDNN's fast layout), and their outputs stay channels-last."""
        self._require_programmed()
        n_in = self.kernel_rows * self.groups // self.product.unit
        if x.dim() != 2 + self.product.dims or x.shape[1] != n_in:
            kind = "(batch, {})" if not self.product.dims else "(batch, {}, *spatial)"
            raise ValueError(f"input must have shape {kind.format(n_in)}, got {tuple(x.shape)}")
        return x.to(self.w_mean.dtype).contiguous(memory_format=self._fmt)

    def _plus_bias(self, y: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``y`` plus a digital bias (in place unless a gradient needs ``y``)."""
        if bias is None:
            return y
        b = self._bias_view(bias)
        return y + b if y.requires_grad or b.requires_grad else y.add_(b)

    def _read_once(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None,
        apply_dac: bool,
        dac_range: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """DAC, one read of the arrays (moments or sampled), ADC: no bias."""
        conv = self.config.converter
        if conv.dac_bits is not None and apply_dac:
            x = self.dac(x, dac_range)
        adc = conv.adc_bits is not None
        if self.config.read_noise_mode == "sample" and self.noisy:
            y = self._read_sampled(x, generator, adc)
            return y if adc else self._output_noise(y, generator)
        rows = self._chunk_rows(x)
        if rows == x.shape[0]:
            return self._read_moments(x, generator, adc)
        # one stream for the whole read: chunks draw exactly the numbers of one whole read
        source = normals.for_read(
            generator, x.shape[0] * self._normals_per_input(x), self.config.read_noise_stream
        )
        if self.product.dims or x.requires_grad:
            return torch.cat([self._read_moments(c, source, adc) for c in x.split(rows)])
        y = x.new_empty(x.shape[0], self.out_features)  # dense chunks are read into place
        if (
            isinstance(source, normals.BlockedNormals)
            and self.noisy
            and adc
            and self.row_blocks > 1
        ):
            self._read_side_by_side(x, y, rows, source, adc)
            return y
        for c, out in zip(x.split(rows), y.split(rows), strict=True):
            self._read_moments(c, source, adc, out)
        return y

    def _read_side_by_side(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        rows: int,
        source: normals.BlockedNormals,
        adc: bool,
    ) -> None:
        """A noisy dense read digitised per row array, in chunks of at most ``rows`` inputs
        into ``y``: side by side on helper threads where that can be done
        (:func:`workers.run_side_by_side`; as many chunks for each thread), else one after
        another. Each chunk draws its own piece of the read's stream, the numbers it would
        draw in turn.

        Measured (one process, against chunks one after another): such a read draws one
        normal per array column, several per output, and side by side they are drawn on
        every core while the products run (MLP 784-300-10 with 8-bit DAC/ADC: 4.4x -> 3.5x
        torch). Reads with one normal per output were as fast or slower side by side, and
        stay with torch, which splits each product over its threads.
        """
        if workers.side_by_side():
            threads = torch.get_num_threads()
            n = -(-math.ceil(x.shape[0] / rows) // threads) * threads
            rows = max(16, -(-x.shape[0] // n // 16) * 16)
        chunks = list(zip(x.split(rows), y.split(rows), strict=True))
        per = self._normals_per_input(x)
        pieces = source.split([len(c) * per for c, _ in chunks])
        tasks = [
            lambda c=c, out=out, s=s: self._read_moments(c, s, adc, out)
            for (c, out), s in zip(chunks, pieces, strict=True)
        ]
        workers.run_side_by_side(tasks)

    def _managed_read(
        self, x: torch.Tensor, generator: torch.Generator | None, apply_dac: bool
    ) -> torch.Tensor:
        """aihwkit's noise and bound management around :meth:`_read_once`.

        Noise management (``abs_max``): each sample's inputs are divided by their max |x|
        (``alpha``) before the DAC (range 1) and the output multiplied by it; a zero input
        gives a zero output. Bound management (``iterative``): samples whose read saturates
        an ADC are read again with inputs ``2, 4, ...`` times smaller (and the output that
        much larger), until none saturates or the factor would pass ``max_bound_factor``;
        the last read is kept either way.
        """
        conv = self.config.converter
        alpha = None
        if conv.noise_management == "abs_max":
            alpha = x.detach().abs().flatten(1).amax(1).view(-1, *([1] * (x.dim() - 1)))
            zero = alpha == 0
            alpha = torch.where(zero, torch.ones_like(alpha), alpha)
            x = x / alpha
            if self.dac_range is None:
                self.dac_range = torch.ones((), dtype=x.dtype, device=x.device)
        self._saturated = None
        y = self._read_once(x, generator, apply_dac)
        if conv.bound_management == "iterative":
            sat, factor = self._saturated, 1.0
            while sat is not None and bool(sat.any()) and factor * 2 <= conv.max_bound_factor:
                factor *= 2
                idx = sat.nonzero().squeeze(1)
                again = self._read_once(x[idx] / factor, generator, apply_dac) * factor
                y = y.index_copy(0, idx, again.to(y.dtype))
                sat = torch.zeros_like(sat).index_copy_(0, idx, self._saturated)
        if alpha is not None:
            y = y * alpha.view(-1, *([1] * (y.dim() - 1)))
            y = torch.where(zero.view(-1, *([1] * (y.dim() - 1))), torch.zeros_like(y), y)
        return y

    def _read_moments(
        self,
        x: torch.Tensor,
        generator: normals.Source,
        adc: bool,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """A read by the moment identity, digitised per row array when there is an ADC (a
        dense read without gradients may be written into ``out``, ``(B, out_features)``)."""
        if adc and self.row_blocks > 1:
            blocks = self._read_blocks_dense if not self.product.dims else self._read_blocks
            return self.adc(blocks(x, generator), generator, out)
        y = self._read_moment(x, generator, None if adc else out)
        if adc:
            return self.adc(self._as_partials(y), generator, out)
        y = self._output_noise(y, generator)
        return y if out is None or y.data_ptr() == out.data_ptr() else out.copy_(y)

    def _chunk_rows(self, x: torch.Tensor) -> int:
        """Inputs per chunk of a batch read in pieces that fit in cache (``CHUNK_ELEMENTS``
        partial sums each), or the whole batch where chunks would change the result or not
        help (measured with ``nvmsim bench``: dense reads of any large batch, convolutions only
        far out of cache).

        A CPU generator fills a tensor in blocks of 16 normals, so chunks of a multiple of 16
        inputs that each draw once get exactly the numbers of one draw for the whole batch.
        Not chunked: reads that draw twice (reference-column noise), CUDA (Philox offsets),
        and the read that calibrates the ADC range (it must see the whole batch).
        """
        b = x.shape[0]
        conv = self.config.converter
        adc = conv.adc_bits is not None
        draws_more = conv.output_noise > 0 or (adc and self.adc_design.noise > 0)
        draws_more = draws_more or conv.bound_management != "none"  # per-sample flags
        if (
            x.device.type != "cpu"
            or (self.noisy and self.ref_var is not None)
            or (adc and self.adc_range is None)
            or draws_more
        ):
            return b
        per_input = max(1, self._normals_per_input(x))
        if self.product.dims and b * per_input <= 16 * CHUNK_ELEMENTS:
            return b  # a convolution on a small batch runs best whole (oneDNN)
        return min(b, max(16, CHUNK_ELEMENTS // per_input // 16 * 16))

    def _normals_per_input(self, x: torch.Tensor) -> int:
        """Outputs (read-noise normals) per input of a moment read: per array with an ADC."""
        sizes = self.product.out_sizes(tuple(x.shape[2:])) if self.product.dims else ()
        arrays = self.row_blocks if self.config.converter.adc_bits is not None else 1
        return self.out_features * math.prod(sizes) * arrays

    def _overflowed(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Raise for a read of finite inputs ``x`` whose output ``y`` is not finite."""
        where = f"layer {self.name!r}: " if self.name else ""
        big, cause = float(x.detach().abs().max()), self._read_cause()
        require_finite(
            y, f"{where}read output",
            f"finite inputs up to {big:.3g}, weight range Wmax = {self.wmax:.3g}; likely {cause}",
        )  # fmt: skip

    def _bias_view(self, b: torch.Tensor) -> torch.Tensor:
        return b.view(1, -1, *([1] * self.product.dims))

    def _noise_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input the noise term is computed from: ``x`` itself (the gradient of the
        sampled read, reparameterised: ``noise_gradient = "sample"``) or ``x`` detached (the
        gradient of the expected read only: ``"expected"``)."""
        return x if self.noise_gradient == "sample" else x.detach()

    def _randn(self, like: torch.Tensor, generator: normals.Source) -> torch.Tensor:
        return normals.standard_normal(like, generator, self.config.read_noise_stream)

    def _read_moment(
        self,
        x: torch.Tensor,
        generator: normals.Source,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Whole-array read by the moment identity: (B, out, *spatial) (a dense read of one
        group may be written into ``out``)."""
        y = self._expected(x, out)
        if not self.noisy:
            return y
        x = self._noise_input(x)
        x2 = x.square() if self.var_const is None or self.ref_var is not None else None
        var = self._variance(x, x2)
        yg = y.view(y.shape[0], self.groups, self.cols, *y.shape[2:])
        y = yg.addcmul_(_std(var), self._randn(yg, generator)).view(y.shape)
        if self.ref_var is not None:
            y = y - self._ref_noise(x2, generator)
        return y

    def _expected(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The expected read (analog bias row included): (B, out, *o)."""
        p = self.product
        if out is not None and not p.kernel and self.groups == 1:
            y = torch.mm(x, self._rw_mean.t(), out=out)
        else:
            y = p.apply(x, self._rw_mean)
        if self._rb_mean is not None:
            y = y.add_(self._bias_view(self._rb_mean))
        return y

    def _variance(self, x: torch.Tensor, x2: torch.Tensor | None) -> torch.Tensor:
        """The read's variance per group and column, ``(B, G, cols, *o)``, or ``(B, G, 1, *o)``
        for a constant ``Var[W]`` (a channel sum of ``x**2``, the same for all columns)."""
        p = self.product
        if self.var_const is not None:
            s = p.channel_sums(x, squared=True)  # (B, G, *o)
            if self.bias_row:
                s = s + 1.0
            return s.mul_(self.var_const).unsqueeze(2)
        var = p.apply(x2, self._rw_var)
        if self._rb_var is not None:
            var = var + self._bias_view(self._rb_var)
        return var.view(var.shape[0], self.groups, self.cols, *var.shape[2:])

    @property
    def sums_by_moments(self) -> bool:
        """Whether a read is exactly its expected value plus independent Gaussian noise per
        output, with nothing after it (no converters, output or reference-column noise,
        management or explicit sampling): such reads of several arrays add digitally as one
        draw (:func:`add_reads`)."""
        cfg, conv = self.config, self.config.converter
        return (
            cfg.read_noise_mode == "moment"
            and conv.dac_bits is None
            and conv.adc_bits is None
            and conv.output_noise == 0
            and (conv.noise_management, conv.bound_management) == ("none", "none")
            and not (self.noisy and self.ref_var is not None)
        )

    def read_moments(
        self, x: torch.Tensor, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean ``(B, out, *o)`` (plus a digital ``bias``) and variance (see
        :meth:`_variance`; None without noise) of one read of ``x``, drawing nothing: the
        read of an array whose output is added to another's (:func:`add_reads`). Needs
        :attr:`sums_by_moments`."""
        x = self._prepared(x)
        if not self.sums_by_moments:
            raise ValueError(
                "read_moments needs a read that is its mean plus Gaussian noise: no DAC, ADC, "
                "output or reference-column noise, management or explicit sampling"
            )
        y = self._plus_bias(self._expected(x), bias)
        if not self.noisy:
            return y, None
        x = self._noise_input(x)
        return y, self._variance(x, None if self.var_const is not None else x.square())

    def _ref_noise(self, x2: torch.Tensor, generator: normals.Source) -> torch.Tensor:
        """Noise of the shared reference column(s): common to all columns of one array."""
        var = self.product.apply(x2, self._rw_ref)  # (B, G*n_ca, *o)
        if self._rb_ref is not None:
            var = var + self._bias_view(self._rb_ref)
        noise_ = _noise(var, self._randn(var, generator))
        b, sp = noise_.shape[0], noise_.shape[2:]
        noise_ = noise_.view(b, self.groups, self.col_blocks, *sp)
        return self.expand_ref(noise_, dim=2).reshape(b, self.out_features, *sp)

    def _as_partials(self, y: torch.Tensor) -> torch.Tensor:
        """(B, out, *o) -> (B, G, 1, cols, *o): one row array's partial sums."""
        return y.view(y.shape[0], self.groups, 1, self.cols, *y.shape[2:])

    def _block_setup(self) -> dict:
        """Per-array inputs and weights for partial sums as one grouped product (cached).

        Array ``j`` of group ``g`` sees the input channels its rows come from (``L`` channels,
        padded with a zero channel); its weight holds its rows at their places in those
        channels' kernels and zeros elsewhere (boundary channels of a split kernel appear in
        both arrays, each with its own rows).
        """
        if self._blocks_cache is not None:
            return self._blocks_cache
        p, parts, unit = self.product, self.partition(), self.product.unit
        k, g_n, cg = self.kernel_rows, self.groups, self.kernel_rows // unit
        spans = [
            (s // unit, (max(e, s + 1) - 1) // unit + 1) if s < k else (0, 0) for s, e in parts
        ]
        spans = [(c0, min(c1, cg)) for c0, c1 in spans]
        width = max(1, max(c1 - c0 for c0, c1 in spans))
        zero = g_n * cg  # index of the appended zero channel
        idx = []
        for gi in range(g_n):
            for c0, c1 in spans:
                ch = [gi * cg + c for c in range(c0, c1)]
                idx += ch + [zero] * (width - len(ch))
        dvc = self.w_mean.device
        fmt = self._fmt

        def weights(m: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
            if m is None:
                return None, None
            cols = m.shape[2]
            out = m.new_zeros(g_n, len(parts), width * unit, cols)
            bias = m.new_zeros(g_n, len(parts), cols) if self.bias_row else None
            for j, ((s, e), (c0, _)) in enumerate(zip(parts, spans, strict=True)):
                ke = min(e, k)
                if ke > s:
                    out[:, j, s - c0 * unit : ke - c0 * unit] = m[:, s:ke]
                if self.bias_row and e > k:
                    bias[:, j] = m[:, k]
            w = out.permute(0, 1, 3, 2).reshape(-1, width * unit)
            return p.kernel_weight(w.contiguous()).contiguous(memory_format=fmt), bias

        aligned = all(s % unit == 0 and (min(e, k) % unit == 0) for s, e in parts)
        cache = {
            "idx": torch.tensor(idx, device=dvc),
            "groups": g_n * len(parts),
            "mean": weights(self.w_mean),
            "var": weights(self.w_var),
            "ref": weights(self.ref_var),
            "aligned": aligned,
            # one group whose arrays take consecutive channels: pad the channels, no gather
            "pad_only": idx[:cg] == list(range(cg)) and all(i == zero for i in idx[cg:]),
        }
        if self.var_const is not None and not aligned:  # aligned: channel sums, as unblocked
            cache["var"] = weights(self.w_mean.new_full(self.w_mean.shape, self.var_const))
        self._blocks_cache = cache
        return cache

    def _read_blocks_dense(self, x: torch.Tensor, generator: normals.Source) -> torch.Tensor:
        """Partial sums of every row array of a dense product: (B, G, n_arrays, cols).

        One matmul per array on its column slice of ``x`` (BLAS reads the slice in place),
        written straight into the output: no padding, no gather.
        """
        b, gn, nb, k = x.shape[0], self.groups, self.row_blocks, self.kernel_rows
        parts = self.partition()
        noisy = self.noisy
        const = self.var_const is not None
        # each array's partial sums contiguous (BLAS writes them in place); viewed (B, G, nb, c)
        out = x.new_empty(gn, nb, b, self.cols).permute(2, 0, 1, 3)
        var = (
            x.new_empty(gn, nb, b, 1 if const else self.cols).permute(2, 0, 1, 3) if noisy else None
        )
        with_ref = noisy and self.ref_var is not None
        ref = x.new_empty(b, gn, nb, self.col_blocks) if with_ref else None
        for g in range(gn):
            xg = x[:, g * k : (g + 1) * k]
            for j, (s, e) in enumerate(parts):
                ke = min(e, k)
                xs = xg[:, s:ke]
                bias_here = self.bias_row and e > k
                self._block_mm(xs, self.w_mean[g], s, ke, out[:, g, j], bias_here)
                if not noisy:
                    continue
                xs = self._noise_input(xs)
                xs2 = xs.square() if (not const or ref is not None) and ke > s else xs
                if const:
                    sq = torch.linalg.vector_norm(xs, dim=1).square_() if ke > s else None
                    v = var[:, g, j, 0]
                    v.copy_(sq) if sq is not None else v.zero_()
                    if bias_here:
                        v.add_(1.0)
                else:
                    self._block_mm(xs2, self.w_var[g], s, ke, var[:, g, j], bias_here)
                if ref is not None:
                    self._block_mm(xs2, self.ref_var[g], s, ke, ref[:, g, j], bias_here)
        if not noisy:
            return out
        std = _std(var.mul_(self.var_const) if const else var)
        out.addcmul_(std, self._randn(out, generator))
        if ref is not None:
            ref = _noise(ref, self._randn(ref, generator))
            out -= self.expand_ref(ref, dim=3)
        return out

    def _block_mm(
        self, xs: torch.Tensor, m: torch.Tensor, s: int, e: int, out: torch.Tensor, bias: bool
    ) -> None:
        """``out = xs @ m[s:e]`` (plus the bias row, driven at 1) into a view of the output."""
        if e > s and out.is_contiguous() and not (xs.requires_grad or m.requires_grad):
            torch.matmul(xs, m[s:e], out=out)
        elif e > s:
            out.copy_(xs @ m[s:e])
        else:
            out.zero_()
        if bias:
            out += m[self.kernel_rows]

    def _read_blocks(self, x: torch.Tensor, generator: normals.Source) -> torch.Tensor:
        """Partial sums of every row array: (B, G, n_arrays, cols, *o)."""
        c = self._block_setup()
        p, nb, b = self.product, self.row_blocks, x.shape[0]
        fmt = self._fmt
        if c["pad_only"]:
            n_in = x.shape[1]
            xb = x.new_empty(b, len(c["idx"]), *x.shape[2:]).contiguous(memory_format=fmt)
            xb[:, :n_in].copy_(x)
            xb[:, n_in:].zero_()
        else:
            xz = torch.cat([x, x.new_zeros(b, 1, *x.shape[2:])], dim=1)
            xb = xz.index_select(1, c["idx"]).contiguous(memory_format=fmt)

        def partial(w_b: tuple, inp: torch.Tensor, cols: int) -> torch.Tensor:
            w, bias = w_b
            y = p.apply(inp, w, c["groups"])
            y = y.view(b, self.groups, nb, cols, *y.shape[2:])
            if bias is not None:
                y = y + bias.view(1, self.groups, nb, cols, *([1] * p.dims))
            return y

        y = partial(c["mean"], xb, self.cols)
        if not self.noisy:
            return y
        xb = self._noise_input(xb)
        const = self.var_const is not None and c["aligned"]
        x2 = None if const and self.ref_var is None else xb.square()
        if const:
            s = p.channel_sums(xb, c["groups"], squared=True)  # (B, G*nb, *o)
            s = s.view(b, self.groups, nb, 1, *s.shape[2:])
            if self.bias_row:
                has_bias = torch.zeros(nb, dtype=s.dtype, device=s.device)
                has_bias[-1] = 1.0
                s = s + has_bias.view(1, 1, nb, 1, *([1] * p.dims))
            std = _std(s.mul_(self.var_const))  # (B, G, nb, 1, *o): all columns
        else:
            std = _std(partial(c["var"], x2, self.cols))
        y = y.addcmul_(std, self._randn(y, generator))
        if self.ref_var is not None:
            var = partial(c["ref"], x2, self.col_blocks)
            rs = _noise(var, self._randn(var, generator))
            y = y - self.expand_ref(rs, dim=3)
        return y

    def _read_sampled(
        self, x: torch.Tensor, generator: torch.Generator | None, per_array: bool
    ) -> torch.Tensor:
        """Explicit per-device noise, fresh for every read (the oracle; slow). With
        ``per_array`` returns digitised partial sums summed, else the plain read."""
        p, gn = self.product, self.groups
        b = x.shape[0]
        sizes = p.out_sizes(tuple(x.shape[2:])) if p.dims else ()
        rows = p.im2col(x).reshape(-1, gn, self.kernel_rows)  # (N, G, k)
        if self.bias_row:
            rows = torch.cat([rows, rows.new_ones(rows.shape[0], gn, 1)], dim=2)
        signs = torch.tensor([1.0, -1.0][: self.g.shape[0]], dtype=x.dtype, device=x.device)
        signs = signs.view(1, -1, 1, 1, 1)
        per = max(1, int(2e7 // max(1, self.g.numel())))
        parts = self.partition()
        outs = []
        for start in range(0, rows.shape[0], per):
            xc = rows[start : start + per]
            n = xc.shape[0]
            g = self._sample_devices(self.g, n, self._bounds, "dead", generator)
            if self._alpha is not None:  # per-column / per-array drift compensation
                g = g * self._alpha
            w = (g * signs).sum(1)  # (n, G, rows, cols)
            if self.g_ref is not None:
                r = self._sample_devices(self.g_ref, n, self._bounds_ref, "dead_ref", generator)
                if self._alpha_ref is not None:
                    r = r * self._alpha_ref
                w = w - self.expand_ref(r)
            w = w * (self.scale * self.compensation)
            if per_array:
                ys = [torch.einsum("ngr,ngrc->ngc", xc[:, :, s:e], w[:, :, s:e]) for s, e in parts]
                outs.append(torch.stack(ys, dim=2))  # (n, G, nb, cols)
            else:
                outs.append(torch.einsum("ngr,ngrc->ngc", xc, w).reshape(n, -1))
        y = torch.cat(outs)
        if per_array:
            y = self.adc(y, generator).reshape(y.shape[0], -1)
        return p.fold(y, b, sizes)

    def _sample_devices(
        self,
        g: torch.Tensor,
        n: int,
        bounds: tuple[noise.Bound, noise.Bound],
        dead_name: str,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """``n`` independent reads of every device: Gaussian (read + 1/f) noise, telegraph
        noise as a Bernoulli step, clip, open devices at 0."""
        tn = self.config.device.telegraph_noise
        out = g.expand(n, *g.shape)
        std = self._gauss_std(g)
        if std is not None:
            out = noise.add_gaussian(out, std.expand_as(out), generator)
        if tn.active:
            shift = noise.telegraph_shift(g, tn.kind, tn.delta).expand_as(out)
            out = noise.add_telegraph(out, shift, tn.p, generator)
        return self._mask(noise.clip_to(out, *bounds), dead_name)

    # ------------------------------------------------------------------ converters
    def dac(self, x: torch.Tensor, live_range: torch.Tensor | None = None) -> torch.Tensor:
        """Quantise inputs to the DAC's levels (straight-through when ``x`` needs a gradient);
        the range is calibrated on the first call (``dac_range = "auto"``). A ``live_range``
        that needs a gradient (a range being learned) gets the clamp's: the summed gradient
        of the inputs it clips (PACT, Choi et al. 2018), rounding straight-through."""
        codes, lsb, lo, hi = self.dac_codes(x)
        q = codes.mul_(lsb)
        if live_range is not None and live_range.requires_grad:
            hi = live_range
            lo = -hi if self.config.converter.input_encoding != "unsigned" else torch.zeros_like(hi)
        elif not x.requires_grad:
            return q
        return _straight_through(x.clamp(lo, hi), q)

    def dac_codes(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The DAC's integer codes of ``x``, its LSB and the range ``[lo, hi]`` they cover
        (:func:`converters.input_codes`), calibrating the range on the first call."""
        conv = self.config.converter
        if self.dac_range is None:
            self.dac_range = converters.fixed_or_calibrated(x, conv.dac_range)
        return converters.input_codes(x, conv.dac_bits, self.dac_range, conv.input_encoding)

    def adc(
        self,
        y: torch.Tensor,
        generator: normals.Source = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Digitise partial sums ``(B, G, n_arrays, cols, *o)`` with one range per row array of
        each group (or per column), then add them digitally: ``(B, out, *o)``. Output noise
        and the ADC model's errors come first. Overwrites ``y`` unless it needs a gradient
        (then rounding is straight-through; saturation is not)."""
        q, r = self.adc_partials(y, generator)
        if not y.requires_grad:
            return self._add_partials(q, out)
        q = self._add_partials(q)
        return _straight_through(self._add_partials(torch.clamp(y, -r, r)), q)

    def adc_partials(
        self, y: torch.Tensor, generator: normals.Source = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Digitised partial sums (same shape as ``y``, detached) and the full range used."""
        conv = self.config.converter
        bits, sp = conv.adc_bits, y.shape[4:]
        if self.adc_range is None:
            self.adc_range = self._calibrate_adc(y)
        lsb, r = self._adc_lsb(len(sp))
        s = adc_models.steps(bits)
        yq = y.detach().clone() if y.requires_grad else y
        sigma = conv.output_noise
        if sigma > 0:
            yq = yq.add_(self._randn(yq, generator), alpha=sigma)
        d = self.adc_design
        if d.ideal:
            codes, _ = converters.quantize_codes(yq, bits, r, inplace=True)
        else:
            view = (1, self.groups, self.row_blocks, self.cols, *([1] * len(sp)))

            def per_column(t: torch.Tensor | None) -> torch.Tensor | None:
                return None if t is None else t.view(view)

            index = self.adc_index(y.device) if self.adc_table is not None else None
            codes = adc_models.convert(
                yq.div_(lsb), bits, d, gain=per_column(self.adc_gain),
                offset=per_column(self.adc_offset), table=self.adc_table,
                index=per_column(index), generator=normals.generator_of(generator),
            )  # fmt: skip
        if conv.bound_management != "none":  # per sample: did any ADC reach its bound?
            self._saturated = (codes.abs() >= s).flatten(1).any(1)
        return codes.mul_(lsb), r

    def _adc_lsb(self, spatial: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The ADC's LSB and full range, shaped ``(1, G, nb, cols or 1, *[1] * spatial)``
        (scalars for a fixed range); with an integer unit the LSB is that unit times a
        power of two."""
        r = self.adc_range
        if r.dim():
            cols = r.shape[2] if r.dim() == 3 else 1
            r = r.view(1, r.shape[0], r.shape[1], cols, *([1] * spatial))
        s = adc_models.steps(self.config.converter.adc_bits)
        lsb = r / s
        if self.adc_unit is not None:  # a power-of-two multiple of the integer unit
            u = self.adc_unit
            lsb = u * torch.exp2(torch.ceil(torch.log2(lsb / u)))
            r = lsb * s
        return lsb, r

    def _digitises_exactly(self, x: torch.Tensor) -> bool:
        """Whether every partial sum of a read of ``x`` is an exact float whose ADC code is
        that of ``x @ (W / lsb)``, so a sliced tile may read it as integer arithmetic
        (:mod:`~nvmsim.crossbar.integer_reads`): noiseless integer weights, an LSB that is a
        power of two of the integer unit, ideal transitions, no mismatch, no per-read noise,
        the range known, no gradient, and a float type whose integers are exact to ``2**24``
        (not half precision)."""
        conv, d = self.config.converter, self.adc_design
        return (
            self._integer_weights
            and x.dtype in (torch.float32, torch.float64)
            and self.adc_unit is not None
            and self.adc_range is not None
            and not (self.bias_row or x.requires_grad)
            and conv.output_noise == 0
            and conv.bound_management == "none"
            and d.noise == 0
            and self.adc_table is None
            and self.adc_gain is None
            and self.adc_offset is None
        )

    def _exact_adc_weights(self) -> tuple[list, list]:
        """Per group and array: ``W_j / lsb_j`` (rows, cols) and the LSB (a float, or a
        per-column row); cached for the current ADC range."""
        key = self.adc_range
        cached = self._exact_cache
        if cached is not None and cached["key"] is key:
            return cached["w"], cached["lsb"]
        lsb, _ = self._adc_lsb()
        lsb = lsb.expand(1, self.groups, self.row_blocks, self.cols)[0]  # (G, nb, cols)
        per_column = self.adc_range.dim() == 3
        weights, lsbs = [], []
        for g in range(self.groups):
            wg, lg = [], []
            for j, (lo, hi) in enumerate(self.partition()):
                hi = min(hi, self.kernel_rows)
                wg.append((self.w_mean[g, lo:hi] / lsb[g, j]).contiguous())
                lg.append(lsb[g, j].contiguous() if per_column else float(lsb[g, j, 0]))
            weights.append(wg)
            lsbs.append(lg)
        self._exact_cache = {"key": key, "w": weights, "lsb": lsbs}
        return weights, lsbs

    def _calibrate_adc(self, y: torch.Tensor) -> torch.Tensor:
        """The ADC range from the first read: per array ``(G, nb)`` or per column
        ``(G, nb, cols)``; a fixed ``adc_range`` is a scalar."""
        conv = self.config.converter
        if conv.adc_range != "auto":
            return torch.tensor(float(conv.adc_range), dtype=y.dtype, device=y.device)
        per_column = conv.adc_range_per == "column"
        dims = (0, *range(4, y.dim())) if per_column else (0, 3, *range(4, y.dim()))
        r = converters.calibrated_range(y, dims=dims, percentile=conv.adc_range_percentile)
        return r.reshape(y.shape[1], y.shape[2], *((y.shape[3],) if per_column else ()))

    def _add_partials(self, q: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Digital sum of the row arrays' partial sums: ``(B, G, nb, cols, *o) -> (B, out, *o)``
        (a dense sum may go into ``out``, ``(B, out)``)."""
        b, sp = q.shape[0], q.shape[4:]
        if out is not None and not sp:
            torch.sum(q, 2, out=out.view(b, self.groups, self.cols))
            return out
        if sp and q.stride(3) == 1:  # channels-last partial sums: reduce in memory order
            n = len(sp)
            perm = (0, *range(4, 4 + n), 1, 2, 3)  # (B, *o, G, nb, cols), contiguous
            s = q.permute(perm).sum(-2).reshape(b, *sp, self.out_features)
            return s.permute(0, n + 1, *range(1, n + 1))
        return q.sum(2).reshape(b, self.out_features, *sp)

    def reset_calibration(self) -> None:
        """Forget auto-calibrated converter ranges; the next read calibrates again."""
        self.dac_range = self.adc_range = None

    def _output_noise(self, y: torch.Tensor, generator: normals.Source) -> torch.Tensor:
        """Output noise of a read without ADC: each array's column adds its own."""
        sigma = self.config.converter.output_noise * math.sqrt(self.row_blocks)
        return y.add_(self._randn(y, generator), alpha=sigma) if sigma > 0 else y
