"""An MLP on device pairs: its arrays, their reads, and training one example at a time by
programming pulses (module doc of :mod:`nvmsim.training.onchip`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from nvmsim.devices import jumptable as jt
from nvmsim.devices import noise as noise_fn
from nvmsim.training.onchip import rules
from nvmsim.training.onchip.config import OnChipConfig
from nvmsim.training.onchip.mlp import activate, activation_grad
from nvmsim.training.onchip.threads import torch_threads
from nvmsim.training.onchip.verify import program_verify

Tensor = torch.Tensor


@dataclass
class Stats:
    """Counters of a network's training: examples, pulses, refreshes, epoch times."""

    examples: int = 0
    set_pulses: int = 0  # device pulses of weight updates
    reset_pulses: int = 0
    refreshes: int = 0  # synapses refreshed (occasional RESET)
    refresh_pulses: int = 0
    epoch_seconds: list[float] = field(default_factory=list)

    @property
    def pulses(self) -> int:
        """Device pulses of weight updates (SET + RESET; refresh not included)."""
        return self.set_pulses + self.reset_pulses


class _Layer:
    """One array: ``G`` is ``(2, in + 1, out)`` (G+, G-), ``W`` the cached weights."""

    def __init__(self, w: Tensor, b: Tensor, w_max: float, g_min: float, g_max: float):
        self.n_in, self.n_out = w.shape[1] + 1, w.shape[0]
        self.w_max = float(w_max)
        self.span = g_max - g_min
        self.scale = self.w_max / self.span  # weight per unit conductance difference
        wa = torch.cat([w.t(), b[None, :]], 0).float().contiguous()
        self.w0 = wa
        self.G = torch.empty(2, self.n_in, self.n_out)
        self.W = torch.empty(self.n_in, self.n_out)

    def refresh_w(self, pos: Tensor | None = None) -> None:
        if pos is None:
            torch.sub(self.G[0], self.G[1], out=self.W)
            self.W.mul_(self.scale)
        else:
            gf = self.G.view(2, -1)
            self.W.view(-1)[pos] = (gf[0, pos] - gf[1, pos]) * self.scale


class OnChipNetwork:
    """An MLP on device pairs, trained one example at a time by pulses (see module doc)."""

    def __init__(
        self,
        layers: list[tuple[Tensor, Tensor]],
        acts: list[str],
        cfg: OnChipConfig,
        generator: torch.Generator,
        set_table: jt.JumpTable,
        reset_table: jt.JumpTable | None,
        s_ref: float,
    ) -> None:
        self.cfg = cfg
        self.gen = generator
        self.acts = acts
        self.set_t, self.reset_t = set_table, reset_table
        self.g_min, self.g_max = set_table.g_min, set_table.g_max
        if reset_table is not None and (
            abs(reset_table.g_min - self.g_min) > 1e-12
            or abs(reset_table.g_max - self.g_max) > 1e-12
        ):
            raise ValueError("SET and RESET tables must cover the same conductance range")
        if cfg.w_max is None:
            wm = [2.0**k for k in range(len(layers))]
        elif isinstance(cfg.w_max, list):
            wm = list(cfg.w_max)
        else:
            wm = [cfg.w_max] * len(layers)
        if len(wm) != len(layers):
            raise ValueError(f"w_max: {len(wm)} values for {len(layers)} layers")
        self.layers = [
            _Layer(w * cfg.init_scale, b * cfg.init_scale, m, self.g_min, self.g_max)
            for (w, b), m in zip(layers, wm, strict=True)
        ]
        self.s_ref = s_ref
        self.span = self.g_max - self.g_min
        self.stats = Stats()
        # Asymmetry compensation factor: SET step / RESET step (medians over the range).
        self.c = 1.0
        if reset_table is not None:
            s_set = float(set_table.mean_step().abs().median())
            s_reset = float(reset_table.mean_step().abs().median())
            self.c = s_set / s_reset if s_reset > 0 else 1.0
        for layer in self.layers:
            self._program_initial(layer)

    # ----------------------------------------------------------------- programming
    def _program_initial(self, layer: _Layer) -> None:
        """Initial weights placed directly (a one-time program-and-verify step)."""
        u = (layer.w0 / layer.scale).clamp(-self.span, self.span)
        if self.cfg.device == "set_only":
            layer.G[0] = self.g_min + u.clamp_min(0)
            layer.G[1] = self.g_min + (-u).clamp_min(0)
        elif self.cfg.device == "bidirectional" and self.cfg.pair_update == "plus":
            mid = self.g_min + 0.5 * self.span
            layer.G[1] = mid
            layer.G[0] = (mid + u).clamp(self.g_min, self.g_max)
        else:
            mid = self.g_min + 0.5 * self.span
            layer.G[0] = (mid + 0.5 * u).clamp(self.g_min, self.g_max)
            layer.G[1] = (mid - 0.5 * u).clamp(self.g_min, self.g_max)
        layer.refresh_w()

    def weights(self) -> list[tuple[Tensor, Tensor]]:
        """Current ``(W (out, in), b (out,))`` of every layer (noise-free)."""
        return [(la.W[:-1].t().clone(), la.W[-1].clone()) for la in self.layers]

    # ----------------------------------------------------------------- reads
    def _read(self, layer: _Layer, x: Tensor, transpose: bool = False) -> Tensor:
        """``x @ W`` (or ``x @ W[:-1].T``) with per-read noise on every device if enabled."""
        W = layer.W[:-1] if transpose else layer.W
        y = x @ (W.t() if transpose else W)
        sigma = self.cfg.read_noise
        if sigma == 0:
            return y
        if self.cfg.read_noise_kind == "additive":
            v = 2.0 * (sigma * self.g_max * layer.scale) ** 2
            var = (x * x).sum(-1, keepdim=True) * v
        else:
            G = layer.G[:, :-1] if transpose else layer.G
            s2 = noise_fn.noise_std(G, "proportional", sigma).pow(2).sum(0) * layer.scale**2
            var = (x * x) @ (s2.t() if transpose else s2)
        eps = torch.randn(y.shape, generator=self.gen)
        return y + var.sqrt() * eps

    def forward(self, x: Tensor, batch: int = 2000) -> Tensor:
        """Logits of a batch (reads through the arrays, with read noise if enabled)."""
        x = x.reshape(len(x), -1).float()
        outs = []
        for i in range(0, len(x), batch):
            h = x[i : i + batch]
            for k, layer in enumerate(self.layers):
                h = torch.cat([h, torch.ones(len(h), 1)], 1)
                a = self._read(layer, h)
                h = activate(self.acts[k], a) if k < len(self.acts) else a
            outs.append(h)
        return torch.cat(outs) if outs else torch.empty(0, self.layers[-1].n_out)

    def accuracy(self, x: Tensor, y: Tensor) -> float:
        if len(x) == 0:
            return float("nan")
        with torch.no_grad():
            return float((self.forward(x).argmax(1) == y).float().mean())

    # ----------------------------------------------------------------- training
    def train_example(self, x: Tensor, label: int, lr: float) -> None:
        """Forward, backward and pulse update for one example (``x`` flat)."""
        one = torch.ones(1)
        hs = [torch.cat([x, one])]
        n = len(self.layers)
        for k, layer in enumerate(self.layers):
            a = self._read(layer, hs[-1])
            if k < n - 1:
                hs.append(torch.cat([activate(self.acts[k], a), one]))
            else:
                out = a
        if self.cfg.loss == "ce":
            delta = -torch.softmax(out, 0)
            delta[label] += 1.0
        else:
            yv = torch.sigmoid(out)
            t = torch.zeros_like(yv)
            t[label] = 1.0
            delta = (t - yv) * yv * (1 - yv)
        deltas = [delta]
        for k in range(n - 1, 0, -1):
            back = self._read(self.layers[k], deltas[0], transpose=True)
            deltas.insert(0, back * activation_grad(self.acts[k - 1], hs[k][:-1]))
        for k, layer in enumerate(self.layers):
            self._update(layer, hs[k], deltas[k], lr)
        self.stats.examples += 1
        every = self.cfg.refresh_interval
        if every and self.stats.examples % every == 0 and self.cfg.device != "float":
            for layer in self.layers:
                self.refresh(layer)

    def train_epoch(self, x: Tensor, y: Tensor, lr: float, threads: int | None = 1) -> float:
        """One pass over ``(x, y)`` in a seeded random order; returns seconds taken.

        Per-example work is many small tensor operations: it runs on ``threads`` torch
        threads (default 1, restored afterwards; None leaves the setting alone), which is
        fastest and immune to contention with other processes.
        """
        t0 = time.perf_counter()
        with torch_threads(threads):
            x = x.reshape(len(x), -1).float()
            order = torch.randperm(len(x), generator=self.gen)
            for i in order.tolist():
                self.train_example(x[i], int(y[i]), lr)
        dt = time.perf_counter() - t0
        self.stats.epoch_seconds.append(dt)
        return dt

    # ----------------------------------------------------------------- pulses
    def _update(self, layer: _Layer, x: Tensor, delta: Tensor, lr: float) -> None:
        cfg = self.cfg
        if cfg.device == "float":
            layer.W.addr_(x, delta, alpha=lr)
            return
        both = cfg.device == "bidirectional" and cfg.pair_update == "both"
        dw = layer.scale * self.s_ref * (2.0 if both else 1.0)  # weight of one nominal event
        qx, qd = cfg.x_pulses, cfg.d_pulses
        c = self.c
        if cfg.device == "set_only" or not cfg.compensate:
            f_set = f_reset = 1.0
        elif cfg.compensate_by == "fewer_reset":
            f_set, f_reset = 1.0, c
        else:
            f_set, f_reset = 1.0 / c, 1.0
        if cfg.rule == "exact":
            counts = rules.exact_counts(x, delta, lr, dw, qx * qd, f_set, f_reset, self.gen)
        elif cfg.rule == "stochastic":
            counts = rules.stochastic_counts(x, delta, lr, dw, qx, qd, f_set, f_reset, self.gen)
        else:
            counts = rules.slot_counts(x, delta, lr, dw, qx, qd, f_set, f_reset, self.gen)
        if counts is None:
            return
        rows, cols, sign, n_set, n_reset = counts
        pos = (rows[:, None] * layer.n_out + cols[None, :]).reshape(-1)
        up = (sign > 0).reshape(-1)
        n_set, n_reset = n_set.reshape(-1), n_reset.reshape(-1)
        plane = layer.n_in * layer.n_out
        flat = layer.G.view(-1)
        touched = []
        # SET phase: G+ for an increase, G- for a decrease (``plus``: increases only, on G+).
        if cfg.device == "bidirectional" and cfg.pair_update == "plus":
            sel_set, dev_set = up & (n_set > 0), torch.zeros_like(pos)
            sel_reset, dev_reset = ~up & (n_reset > 0), torch.zeros_like(pos)
        else:
            sel_set, dev_set = n_set > 0, (~up).long()
            sel_reset, dev_reset = n_reset > 0, up.long()
        if bool(sel_set.any()):
            idx = (dev_set * plane + pos)[sel_set]
            k = jt.apply_pulses(self.set_t, flat, idx, n_set[sel_set], self.gen)
            self.stats.set_pulses += k
            touched.append(pos[sel_set])
        if cfg.device == "bidirectional" and self.reset_t is not None and bool(sel_reset.any()):
            idx = (dev_reset * plane + pos)[sel_reset]
            k = jt.apply_pulses(self.reset_t, flat, idx, n_reset[sel_reset], self.gen)
            self.stats.reset_pulses += k
            touched.append(pos[sel_reset])
        if touched:
            layer.refresh_w(torch.cat(touched) if len(touched) > 1 else touched[0])

    # ----------------------------------------------------------------- occasional RESET
    def refresh(self, layer: _Layer) -> int:
        """Occasional RESET: synapses with a device at or above ``refresh_threshold`` of the
        range have both devices RESET to ``g_min`` and the weight reprogrammed onto one of
        them (SET pulses with verify, or placed exactly with ``refresh_mode = "ideal"``).
        Returns the number of synapses refreshed."""
        thr = self.g_min + self.cfg.refresh_threshold * self.span
        gf = layer.G.view(2, -1)
        sat = (gf[0] >= thr) | (gf[1] >= thr)
        pos = sat.nonzero().squeeze(1)
        if pos.numel() == 0:
            return 0
        self.stats.refreshes += pos.numel()
        diff = gf[0, pos] - gf[1, pos]
        gf[0, pos] = self.g_min
        gf[1, pos] = self.g_min
        dev = (diff < 0).long()
        target = self.g_min + diff.abs()
        flat_idx = dev * gf.shape[1] + pos
        flat = layer.G.view(-1)
        if self.cfg.refresh_mode == "ideal":
            flat[flat_idx] = target
        else:
            self.stats.refresh_pulses += program_verify(
                self.set_t, flat, flat_idx, target, self.gen
            )
        layer.refresh_w(pos)
        return pos.numel()

    # ----------------------------------------------------------------- statistics
    def diamond(self) -> dict[str, float]:
        """G-diamond statistics: fractions of synapses with both devices within
        ``saturation_tol`` of ``g_max`` (saturated) or of ``g_min`` (collapsed)."""
        tol = self.cfg.saturation_tol * self.span
        total = sat = low = 0
        for layer in self.layers:
            gp, gm = layer.G[0], layer.G[1]
            sat += int(((gp >= self.g_max - tol) & (gm >= self.g_max - tol)).sum())
            low += int(((gp <= self.g_min + tol) & (gm <= self.g_min + tol)).sum())
            total += gp.numel()
        return {"saturated_fraction": sat / total, "collapsed_fraction": low / total}
