"""``AnalogTile``: a weight matrix programmed onto crossbar arrays once, then read many times.

A matrix larger than one array (``tile_rows x tile_cols``) is split into arrays; each array's
column currents are digitised by its own ADC and the partial sums are added digitally. The
split only changes results where it matters (ADC on partial sums, one reference column per
array for the offset mapping); otherwise a read is one matmul over the whole matrix.

Reads use the moment identity (DESIGN.md): for independent Gaussian per-device read noise,
``y = x @ E[W] + sqrt(x**2 @ Var[W]) * eps`` has exactly the distribution of reading every
device with its own noise. Clipping of noisy conductances is folded into ``E[W]`` and
``Var[W]`` through the censored-Gaussian moments. When ``Var[W]`` is the same for every weight
(additive noise, clipping negligible to ``moment_rtol``) the second matmul becomes a sum of
``x**2``. ``read_noise_mode = "sample"`` draws every device explicitly and is the oracle.

Device effects compose in one fixed order (docs/devices.md):

1. ``program()``: target mapping -> quantisation -> device range factor -> programming error
   -> stuck-at faults -> dead rows / columns -> clip (drawn once);
2. ``drift_to(t)``: power-law drift -> retention (deterministic given the programmed state);
3. every read: read noise (Gaussian read noise and 1/f noise, random telegraph noise) -> clip
   -> global drift compensation (a gain on the whole tile) -> ADC.

Per-read effects enter the moment identity through each device's exact mean and variance
(Gaussian + telegraph mixture, censored by the clip); the output is then Gaussian with exactly
those moments, which is exact in distribution for Gaussian noise without clipping and exact
in mean and variance otherwise. Effects that are off cost nothing: no draws, no extra work.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nvmsim.config import AnalogConfig
from nvmsim.crossbar import converters, mapping
from nvmsim.devices import drift as drift_fn
from nvmsim.devices import faults, levels, noise


def _table(cfg) -> dict:
    """Keyword arguments of a conductance-dependent noise (table / polynomial)."""
    if cfg.kind == "table":
        return {"g_points": cfg.g_points, "sigma_points": cfg.sigma_points}
    if cfg.kind == "polynomial":
        return {"coeffs": cfg.coeffs}
    return {}


class NotProgrammedError(RuntimeError):
    """Raised when a tile is read before :meth:`AnalogTile.program`."""


class AnalogTile:
    """Conductances of one weight matrix ``(out, in)`` and the periphery that reads them."""

    def __init__(self, config: AnalogConfig | None = None) -> None:
        self.config = config or AnalogConfig()
        self.programmed = False
        self.time = 0.0
        self._dac_range: torch.Tensor | None = None
        self._adc_range: torch.Tensor | None = None

    # ------------------------------------------------------------------ programming
    def program(self, weight: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Map ``weight`` (out, in) to conductances and write them, drawing everything that is
        fixed at programming time once from ``generator``.

        Order: target mapping -> quantisation (``bits`` / ``levels``) -> device range factor
        (``range_std``) -> programming error -> stuck-at faults -> dead rows / columns ->
        clip. Random draws happen only for effects that are on, so turning an effect off
        leaves every other draw unchanged.
        """
        cfg, dev = self.config, self.config.device
        w = weight.detach().to(torch.float32)
        if w.dim() != 2:
            raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(w.shape)}")
        if not torch.isfinite(w).all():
            raise ValueError("weight contains NaN or inf; cannot program it")
        g_min = dev.g_min
        pe = dev.programming_error
        if pe.kind == "weight":
            w = noise.weight_error(w, pe.sigma, generator)
        wt = w.t().contiguous()  # (in, out): rows of the crossbar are inputs
        self.in_features, self.out_features = wt.shape
        self.wmax = mapping.weight_range(wt, cfg.crossbar.weight_clip_percentile)
        self.scale = mapping.scale(cfg.crossbar.mapping, self.wmax, g_min)
        g = mapping.to_conductances(wt, cfg.crossbar.mapping, self.wmax, g_min)
        g, self.range_factor = self._write(g, generator)
        ref, self.range_factor_ref = None, None
        if cfg.crossbar.mapping == "offset":
            n_arrays = math.ceil(self.out_features / cfg.crossbar.tile_cols)
            ref = torch.full((self.in_features, n_arrays), mapping.reference_level(g_min))
            ref, self.range_factor_ref = self._write(ref, generator)
        self.dead, self.dead_ref = self._dead_lines(g.shape[0], ref is not None, generator)
        self._alive = self._alive_ref = None
        if self.dead is not None:
            if dev.dead_state == "gmin":
                g = torch.where(self.dead, self._dev_bound(g_min, self.range_factor), g)
                if ref is not None:
                    lo_ref = self._dev_bound(g_min, self.range_factor_ref)
                    ref = torch.where(self.dead_ref, lo_ref, ref)
            else:
                self._alive = (~self.dead).to(g.dtype)
                if ref is not None:
                    self._alive_ref = (~self.dead_ref).to(ref.dtype)
        self._bounds = self._clip_bounds(self.range_factor)
        self.g0 = self._mask(noise.clip_to(g, *self._bounds), self._alive)
        self._g_inf = self._retention_target(self.range_factor)
        self.g_ref0 = None
        if ref is not None:
            self._bounds_ref = self._clip_bounds(self.range_factor_ref)
            self.g_ref0 = self._mask(noise.clip_to(ref, *self._bounds_ref), self._alive_ref)
            self._g_inf_ref = self._retention_target(self.range_factor_ref)
        self.nu = self.nu_ref = None
        if dev.drift_nu > 0 or dev.drift_nu_std > 0:
            self.nu = drift_fn.draw_nu(self.g0.shape, dev.drift_nu, dev.drift_nu_std, generator)
            if self.g_ref0 is not None:
                shape = self.g_ref0.shape
                self.nu_ref = drift_fn.draw_nu(shape, dev.drift_nu, dev.drift_nu_std, generator)
        self._dac_range = self._adc_range = None
        self._cal0: float | None = None
        self.programmed = True
        self.drift_to(0.0)

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
            s = torch.exp(dev.range_std * torch.randn(g.shape, generator=generator))
            g = g * s
        pe = dev.programming_error
        if pe.kind != "weight" and pe.active:
            g = noise.add_noise(g, pe.kind, pe.sigma, generator, **_table(pe))
        g = faults.stuck_at(
            g, dev.stuck_at_gmin, dev.stuck_at_gmax,
            self._dev_bound(g_min, s), self._dev_bound(1.0, s), generator,
        )  # fmt: skip
        return g, s

    @staticmethod
    def _dev_bound(value: float, s: torch.Tensor | None) -> float | torch.Tensor:
        """A nominal conductance in one device's own range."""
        return value if s is None else value * s

    @staticmethod
    def _mask(g: torch.Tensor, alive: torch.Tensor | None) -> torch.Tensor:
        return g if alive is None else g * alive

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

    def _dead_lines(
        self, n_stacks: int, with_ref: bool, generator: torch.Generator | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Devices on dead rows / columns, per physical array: each stack (G+, G-) is its own
        set of arrays; with the offset mapping an array's reference column is its last
        column (a dead row kills its reference device too)."""
        dev, xb = self.config.device, self.config.crossbar
        if dev.dead_rows == 0 and dev.dead_cols == 0:
            return None, None
        tc = xb.tile_cols
        n_arrays = math.ceil(self.out_features / tc)
        width = tc + 1 if with_ref else tc
        j = torch.arange(self.out_features)
        gcols = (j // tc) * width + j % tc
        rcols = torch.arange(n_arrays) * width + tc
        masks, ref_mask = [], None
        for k in range(n_stacks):
            m = faults.dead_line_mask(
                self.in_features, n_arrays * width, xb.tile_rows, width,
                dev.dead_rows, dev.dead_cols, generator,
            )  # fmt: skip
            masks.append(m[:, gcols])
            if k == 0 and with_ref:
                ref_mask = m[:, rcols]
        return torch.stack(masks), ref_mask

    def drift_to(self, t_seconds: float) -> None:
        """Let the programmed conductances evolve to ``t_seconds`` after programming: power-law
        drift, then retention loss (relaxation towards its target)."""
        self._require_programmed()
        dev = self.config.device
        if not (t_seconds >= 0 and math.isfinite(t_seconds)):
            raise ValueError(f"t_seconds must be finite and >= 0, got {t_seconds}")
        self.time = float(t_seconds)
        tau = dev.retention.tau
        g = drift_fn.evolve(self.g0, self.time, self.nu, dev.drift_t0, tau, self._g_inf)
        g = g if g is self.g0 else self._mask(g, self._alive)
        ref = self.g_ref0
        if ref is not None:
            ref = drift_fn.evolve(ref, self.time, self.nu_ref, dev.drift_t0, tau, self._g_inf_ref)
            ref = ref if ref is self.g_ref0 else self._mask(ref, self._alive_ref)
        self.g, self.g_ref = g, ref
        self._prepare_reads()

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

    def _prepare_reads(self) -> None:
        """Expected weight and per-weight read variance, in weight units."""
        dev = self.config.device
        effects, self.noisy = self._read_effects()
        signs = (1.0, -1.0)
        if effects:
            m, v = self._moments(self.g, self._bounds)
            m = self._mask(m, self._alive)
            v = self._mask(v, self._alive) if self.noisy else None
        else:
            m, v = self.g, None
        var = None if v is None else v.sum(0)
        self.ref_var = rm = None
        if self.g_ref is not None:
            if effects:
                rm, rv = self._moments(self.g_ref, self._bounds_ref)
                rm = self._mask(rm, self._alive_ref)
                if self.noisy:
                    self.ref_var = (self._mask(rv, self._alive_ref) * self.scale**2).contiguous()
            else:
                rm = self.g_ref
        if self.config.crossbar.parasitics:
            m, rm = self._with_ir_drop(m, rm)
        mean = sum(s * m[i] for i, s in enumerate(signs[: m.shape[0]]))
        if rm is not None:
            mean = mean - self.expand_ref(rm)
        mean = mean * self.scale
        self.compensation = 1.0
        if dev.drift_compensation:
            self.compensation = alpha = self._drift_compensation(mean)
            if alpha != 1.0:
                mean = mean * alpha
                var = None if var is None else var * alpha**2
                if self.ref_var is not None:
                    self.ref_var = self.ref_var * alpha**2
        self.w_mean = mean.contiguous()  # (in, out)
        self.w_mean_t = self.w_mean.t().contiguous()  # (out, in), for F.linear
        self.var_const: float | None = None
        self.w_var = self.w_var_t = None
        if var is not None:
            var = var * self.scale**2
            vmax = float(var.max()) if var.numel() else 0.0
            if vmax - float(var.min()) <= self.config.moment_rtol * vmax:
                self.var_const = float(var.mean())
            else:
                self.w_var = var.contiguous()
                self.w_var_t = var.t().contiguous()

    def _drift_compensation(self, mean: torch.Tensor) -> float:
        """Global drift compensation: the tile reads a calibration input (all ones) right after
        programming and again now; outputs are multiplied by the ratio of the summed absolute
        column outputs, ``sum|y(0)| / sum|y(t)|``. The calibration read is the expected
        (noise-free) read: averaged over all rows and columns its noise is negligible."""
        c = float(mean.double().sum(0).abs().sum())
        if self._cal0 is None:
            self._cal0 = c
        return self._cal0 / c if c > 0 and self._cal0 > 0 else 1.0

    def _with_ir_drop(
        self, m: torch.Tensor, ref: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Replace mean conductances by each array's exact effective matrix (IR drop).

        Every ``tile_rows x tile_cols`` block of each conductance stack (G+ and G-, or G) is
        one physical array; with the offset mapping its reference column is the array's last
        column. Read noise keeps the variance of the devices themselves (first order).
        """
        from nvmsim.crossbar.parasitics import effective_matrix

        xb = self.config.crossbar
        g_s = self.config.device.g_max_siemens
        tr, tc = xb.tile_rows, xb.tile_cols
        m_eff = torch.empty_like(m)
        ref_eff = None if ref is None else torch.empty_like(ref)
        for k in range(m.shape[0]):
            for r0 in range(0, self.in_features, tr):
                for a, c0 in enumerate(range(0, self.out_features, tc)):
                    block = m[k, r0 : r0 + tr, c0 : c0 + tc]
                    if ref is not None:
                        block = torch.cat([block, ref[r0 : r0 + tr, a : a + 1]], dim=1)
                    t = effective_matrix(
                        block.double() * g_s, xb.r_row, xb.r_col,
                        both_ends=xb.both_ends, r_access=xb.r_access,
                    ) / g_s  # fmt: skip
                    t = t.to(m.dtype)
                    if ref is not None:
                        if k == 0:
                            ref_eff[r0 : r0 + tr, a] = t[:, -1]
                        t = t[:, :-1]
                    m_eff[k, r0 : r0 + tr, c0 : c0 + tc] = t
        return m_eff, ref_eff

    def expand_ref(self, ref: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Per-array reference values (on axis ``dim``) broadcast to the columns they serve."""
        ref = ref.repeat_interleave(self.config.crossbar.tile_cols, dim=dim)
        return ref.narrow(dim, 0, self.out_features)

    def _require_programmed(self) -> None:
        if not self.programmed:
            raise NotProgrammedError("tile read before program(); call .program() first")

    # ------------------------------------------------------------------ reading
    @property
    def row_blocks(self) -> int:
        return math.ceil(self.in_features / self.config.crossbar.tile_rows)

    def read(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        bias: torch.Tensor | None = None,
        apply_dac: bool = True,
    ) -> torch.Tensor:
        """One analog read of every row of ``x`` (B, in) -> (B, out), plus a digital bias.

        ``apply_dac=False`` is for callers that quantised the inputs already.
        """
        self._require_programmed()
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"input must have shape (batch, {self.in_features}), got {tuple(x.shape)}"
            )
        conv = self.config.converter
        x = x.to(self.w_mean.dtype)
        if conv.dac_bits is not None and apply_dac:
            x = self.dac(x)
        blocked = conv.adc_bits is not None and self.row_blocks > 1
        if self.config.read_noise_mode == "sample" and self.noisy:
            y = self._read_sampled(x, generator, blocked)
        elif blocked:
            y = self._read_moment_blocks(x, generator)
        elif conv.adc_bits is None:
            return self._read_moment(x, generator, bias)
        else:
            y = self._read_moment(x, generator)
        if conv.adc_bits is not None:
            y = self.adc(y if blocked else y.unsqueeze(0)).sum(0)
        if bias is not None:
            y = y + bias
        return y

    def _read_moment(
        self, x: torch.Tensor, generator: torch.Generator | None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        y = F.linear(x, self.w_mean_t, bias)
        if not self.noisy:
            return y
        eps = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        if self.var_const is not None:  # Var[W] constant: the second matmul is |x|^2
            std = torch.linalg.vector_norm(x, dim=1, keepdim=True).mul_(math.sqrt(self.var_const))
            x2 = None
        else:
            x2 = x.square()
            std = F.linear(x2, self.w_var_t).sqrt_()
        y.addcmul_(std, eps)
        if self.ref_var is not None:
            y -= self.ref_noise(x.square() if x2 is None else x2, generator)
        return y

    def ref_noise(self, x2: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Noise of the shared reference column(s): common to all columns of one array."""
        std = (x2 @ self.ref_var).sqrt_()  # (B, n_arrays)
        eps = torch.randn(std.shape, generator=generator, dtype=std.dtype, device=std.device)
        return self.expand_ref(std * eps)

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in) -> (nb, B, tile_rows), zero-padded: zero inputs draw no current."""
        tr, nb = self.config.crossbar.tile_rows, self.row_blocks
        x = F.pad(x, (0, nb * tr - self.in_features))
        return x.view(x.shape[0], nb, tr).transpose(0, 1)

    def _wblocks(self, w: torch.Tensor) -> torch.Tensor:
        """(in, cols) -> (nb, tile_rows, cols), zero-padded."""
        tr, nb = self.config.crossbar.tile_rows, self.row_blocks
        return F.pad(w, (0, 0, 0, nb * tr - self.in_features)).view(nb, tr, w.shape[1])

    def _row_slices(self) -> list[slice]:
        tr = self.config.crossbar.tile_rows
        return [slice(s, min(s + tr, self.in_features)) for s in range(0, self.in_features, tr)]

    def _block_matmul(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """(B, in) @ (in, cols) kept per row-block: (nb, B, cols). One matmul per block on a
        strided view of ``x``: no padded copy, no wasted products on padding."""
        slices = self._row_slices()
        out = x.new_empty(len(slices), x.shape[0], w.shape[1])
        for i, sl in enumerate(slices):
            torch.mm(x[:, sl], w[sl], out=out[i])
        return out

    def _read_moment_blocks(self, x: torch.Tensor, generator: torch.Generator | None):
        y = self._block_matmul(x, self.w_mean)
        if not self.noisy:
            return y
        x2 = x.square()
        if self.var_const is not None:
            sums = [x2[:, sl].sum(1, keepdim=True) for sl in self._row_slices()]
            std = torch.stack(sums).mul_(self.var_const).sqrt_()
        else:
            std = self._block_matmul(x2, self.w_var).sqrt_()
        eps = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        y.addcmul_(std, eps)
        if self.ref_var is not None:
            rstd = self._block_matmul(x2, self.ref_var).sqrt_()
            reps = torch.randn(rstd.shape, generator=generator, dtype=y.dtype, device=y.device)
            y = y - self.expand_ref(rstd * reps)
        return y

    def _read_sampled(self, x: torch.Tensor, generator: torch.Generator | None, blocked: bool):
        """Explicit per-device noise, fresh for every input row (the oracle; slow)."""
        signs = torch.tensor([1.0, -1.0][: self.g.shape[0]]).view(-1, 1, 1)
        per = max(1, int(2e7 // max(1, self.g.numel())))
        outs = []
        for start in range(0, x.shape[0], per):
            xc = x[start : start + per]
            b = xc.shape[0]
            g = self._sample_devices(self.g, b, self._bounds, self._alive, generator)
            w = (g * signs).sum(1)  # (b, in, out)
            if self.g_ref is not None:
                r = self._sample_devices(
                    self.g_ref, b, self._bounds_ref, self._alive_ref, generator
                )
                w = w - self.expand_ref(r)
            w = w * (self.scale * self.compensation)
            if blocked:
                wb = torch.stack([self._wblocks(wi) for wi in w], 1)  # (nb, b, tr, out)
                outs.append(torch.einsum("nbt,nbto->nbo", self._blocks(xc), wb))
            else:
                outs.append(torch.einsum("bi,bio->bo", xc, w))
        return torch.cat(outs, dim=1 if blocked else 0)

    def _sample_devices(
        self,
        g: torch.Tensor,
        b: int,
        bounds: tuple[noise.Bound, noise.Bound],
        alive: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """``b`` independent reads of every device: Gaussian (read + 1/f) noise, telegraph
        noise as a Bernoulli step, clip, open devices at 0."""
        tn = self.config.device.telegraph_noise
        out = g.expand(b, *g.shape)
        std = self._gauss_std(g)
        if std is not None:
            out = noise.add_gaussian(out, std.expand_as(out), generator)
        if tn.active:
            shift = noise.telegraph_shift(g, tn.kind, tn.delta).expand_as(out)
            out = noise.add_telegraph(out, shift, tn.p, generator)
        return self._mask(noise.clip_to(out, *bounds), alive)

    # ------------------------------------------------------------------ converters
    def dac(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.config.converter
        if self._dac_range is None:
            self._dac_range = (
                converters.calibrated_range(x)
                if conv.dac_range == "auto"
                else torch.tensor(float(conv.dac_range))
            )
        return converters.quantize_symmetric(x, conv.dac_bits, self._dac_range)

    def adc(self, y: torch.Tensor) -> torch.Tensor:
        """Quantise partial sums (nb, B, out) with one range per array row-block."""
        conv = self.config.converter
        if self._adc_range is None:
            self._adc_range = (
                converters.calibrated_range(y, dims=(1, 2))
                if conv.adc_range == "auto"
                else torch.tensor(float(conv.adc_range))
            )
        return converters.quantize_symmetric(y, conv.adc_bits, self._adc_range)

    def reset_calibration(self) -> None:
        """Forget auto-calibrated converter ranges; the next read calibrates again."""
        self._dac_range = self._adc_range = None
