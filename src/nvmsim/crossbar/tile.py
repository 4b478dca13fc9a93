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
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nvmsim.config import AnalogConfig
from nvmsim.crossbar import converters, mapping
from nvmsim.devices import drift as drift_fn
from nvmsim.devices import faults, levels, noise


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
        """Map ``weight`` (out, in) to conductances, with quantisation, programming error and
        faults drawn once from ``generator``."""
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
        g = levels.quantize(g, dev.bits, g_min)
        if pe.kind != "weight" and pe.sigma > 0:
            g = noise.add_noise(g, pe.kind, pe.sigma, generator)
        g = faults.stuck_at(g, dev.stuck_at_gmin, dev.stuck_at_gmax, g_min, 1.0, generator)
        self.g0 = noise.clip(g, dev.clip, g_min)
        self.g_ref0 = None
        if cfg.crossbar.mapping == "offset":
            n_arrays = math.ceil(self.out_features / cfg.crossbar.tile_cols)
            ref = torch.full((self.in_features, n_arrays), mapping.reference_level(g_min))
            ref = levels.quantize(ref, dev.bits, g_min)
            if pe.kind != "weight" and pe.sigma > 0:
                ref = noise.add_noise(ref, pe.kind, pe.sigma, generator)
            ref = faults.stuck_at(ref, dev.stuck_at_gmin, dev.stuck_at_gmax, g_min, 1.0, generator)
            self.g_ref0 = noise.clip(ref, dev.clip, g_min)
        self.nu = self.nu_ref = None
        if dev.drift_nu > 0 or dev.drift_nu_std > 0:
            self.nu = drift_fn.draw_nu(self.g0.shape, dev.drift_nu, dev.drift_nu_std, generator)
            if self.g_ref0 is not None:
                shape = self.g_ref0.shape
                self.nu_ref = drift_fn.draw_nu(shape, dev.drift_nu, dev.drift_nu_std, generator)
        self._dac_range = self._adc_range = None
        self.programmed = True
        self.drift_to(0.0)

    def drift_to(self, t_seconds: float) -> None:
        """Let the programmed conductances drift to ``t_seconds`` after programming."""
        self._require_programmed()
        dev = self.config.device
        self.time = float(t_seconds)
        g, ref = self.g0, self.g_ref0
        if self.nu is not None:
            g = drift_fn.drift(g, self.nu, self.time, dev.drift_t0)
            if ref is not None:
                ref = drift_fn.drift(ref, self.nu_ref, self.time, dev.drift_t0)
        self.g, self.g_ref = g, ref
        self._prepare_reads()

    def _prepare_reads(self) -> None:
        """Expected weight and per-weight read variance, in weight units."""
        dev = self.config.device
        rn = dev.read_noise
        lo, hi = noise.clip_bounds(dev.clip, dev.g_min)
        self.noisy = rn.sigma > 0
        signs = (1.0, -1.0)
        if self.noisy:
            m, v = noise.censored_moments(
                self.g, noise.noise_std(self.g, rn.kind, rn.sigma), lo, hi
            )
        else:
            m, v = self.g, None
        var = None if v is None else v.sum(0)
        self.ref_var = rm = None
        if self.g_ref is not None:
            if self.noisy:
                std = noise.noise_std(self.g_ref, rn.kind, rn.sigma)
                rm, rv = noise.censored_moments(self.g_ref, std, lo, hi)
                self.ref_var = (rv * self.scale**2).contiguous()
            else:
                rm = self.g_ref
        if self.config.crossbar.parasitics:
            m, rm = self._with_ir_drop(m, rm)
        mean = sum(s * m[i] for i, s in enumerate(signs[: m.shape[0]]))
        if rm is not None:
            mean = mean - self.expand_ref(rm)
        self.w_mean = (mean * self.scale).contiguous()  # (in, out)
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
        self._block_cache: dict[str, torch.Tensor] = {}

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

    def _cached_blocks(self, name: str) -> torch.Tensor:
        """Row-blocked copy of ``self.<name>``, made once per programmed state."""
        if name not in self._block_cache:
            self._block_cache[name] = self._wblocks(getattr(self, name))
        return self._block_cache[name]

    def _read_moment_blocks(self, x: torch.Tensor, generator: torch.Generator | None):
        xb = self._blocks(x)
        y = torch.bmm(xb, self._cached_blocks("w_mean"))
        if not self.noisy:
            return y
        x2 = xb.square()
        if self.var_const is not None:
            std = (x2.sum(2, keepdim=True) * self.var_const).sqrt_()
        else:
            std = torch.bmm(x2, self._cached_blocks("w_var")).sqrt_()
        eps = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        y.addcmul_(std, eps)
        if self.ref_var is not None:
            rstd = torch.bmm(x2, self._cached_blocks("ref_var")).sqrt_()
            reps = torch.randn(rstd.shape, generator=generator, dtype=y.dtype, device=y.device)
            y = y - self.expand_ref(rstd * reps)
        return y

    def _read_sampled(self, x: torch.Tensor, generator: torch.Generator | None, blocked: bool):
        """Explicit per-device noise, fresh for every input row (the oracle; slow)."""
        dev = self.config.device
        rn = dev.read_noise
        signs = torch.tensor([1.0, -1.0][: self.g.shape[0]]).view(-1, 1, 1)
        per = max(1, int(2e7 // max(1, self.g.numel())))
        outs = []
        for start in range(0, x.shape[0], per):
            xc = x[start : start + per]
            b = xc.shape[0]
            g = noise.add_noise(self.g.expand(b, *self.g.shape), rn.kind, rn.sigma, generator)
            w = (noise.clip(g, dev.clip, dev.g_min) * signs).sum(1)  # (b, in, out)
            if self.g_ref is not None:
                r = noise.add_noise(
                    self.g_ref.expand(b, *self.g_ref.shape), rn.kind, rn.sigma, generator
                )
                w = w - self.expand_ref(noise.clip(r, dev.clip, dev.g_min))
            w = w * self.scale
            if blocked:
                wb = torch.stack([self._wblocks(wi) for wi in w], 1)  # (nb, b, tr, out)
                outs.append(torch.einsum("nbt,nbto->nbo", self._blocks(xc), wb))
            else:
                outs.append(torch.einsum("bi,bio->bo", xc, w))
        return torch.cat(outs, dim=1 if blocked else 0)

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
