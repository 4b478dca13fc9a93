"""On-chip training with NVM jump-tables (paper 004: Sidler, Boybat, ..., Burr).

Every weight is ``w = w_max * (G+ - G-) / (g_max - g_min)`` on a pair of devices whose
conductances only change by programming pulses drawn from jump-tables
(:mod:`nvmsim.devices.jumptable`). Training is backpropagation as a crossbar would run it,
one example at a time:

1. forward: every layer reads its array, ``a = [x, 1] @ W`` (the bias is a row driven at 1),
   optionally with per-read noise (moment identity over both devices, as in the tiles);
2. backward: ``delta`` of the output (``onehot - softmax``, or ``(t - y) y (1 - y)`` for the
   squared error on sigmoid outputs) is read back through the transposed arrays,
   ``delta_prev = (W[:-1] @ delta) * f'(a_prev)``;
3. update (Burr et al., IEDM 2014, crossbar-compatible): each upstream neuron ``i`` turns its
   activation into ``nx_i = sround(|x_i| * x_pulses)`` pulses and each downstream neuron
   ``j`` turns ``lr * |delta_j|`` into ``nd_j = sround(lr * |delta_j| / (dw * x_pulses))``
   pulses (at most ``d_pulses``), ``dw`` being the weight change of one nominal pulse. The
   upstream neuron fires in time slots ``t`` with ``t mod x_pulses < nx_i``, the downstream
   one in slots with ``t // x_pulses < nd_j``: a device receives a programming pulse only
   where both coincide, i.e. exactly ``nx_i * nd_j`` pulses, on average
   ``lr * |x_i * delta_j| / dw``. No neuron needs anything but its own value; the sign of
   ``x_i * delta_j`` picks the device (and SET or RESET), as the row and column polarities
   would. Stochastic rounding ``sround`` keeps the expectation exact.

Devices (``device``): ``bidirectional`` (SET and RESET; ``pair_update = "both"`` raises
``G+`` and lowers ``G-`` for a positive update, ``"plus"`` moves only ``G+``, ``G-`` being a
fixed reference), ``set_only`` (PCM: a positive update SETs ``G+``, a negative one SETs
``G-``; when either device nears ``g_max`` both are RESET and the difference reprogrammed:
"occasional RESET") and ``float`` (exact software updates ``lr * x * delta`` on the same
network, the reference). Asymmetry compensation fires ``c = SET step / RESET step`` times
the RESET pulses (``fewer_reset``; stochastic rounding with the same deviate as the SET
phase) or ``1/c`` times the SET pulses (``more_set``).

``evaluate_onchip`` is the study runner's hook (``[scenario] onchip = { ... }``).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import nn

from nvmsim.devices import jumptable as jt
from nvmsim.devices import noise as noise_fn

Tensor = torch.Tensor
DataFn = Callable[[str, int | None], tuple[Tensor, Tensor]]


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` torch threads (None: leave the setting alone), then
    restore the previous count."""
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class OnChipConfig(BaseModel):
    """Settings of on-chip training (the ``[scenario] onchip`` table of a study)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    # devices and their jump-tables
    device: Literal["bidirectional", "set_only", "float"] = "bidirectional"
    table: Literal["linear", "nonlinear", "file"] = "linear"
    n_steps: float = Field(1000.0, gt=0, allow_inf_nan=False)
    spread: float = Field(0.0, ge=0, allow_inf_nan=False)
    asymmetry: float = Field(1.0, gt=0, allow_inf_nan=False)
    compensate: bool = False
    compensate_by: Literal["fewer_reset", "more_set"] = "fewer_reset"
    nonlinear_extent: float = Field(0.0, ge=0, le=1, allow_inf_nan=False)
    strength: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    set_table: str | None = None
    reset_table: str | None = None
    bins: int = Field(100, ge=1)
    pair_update: Literal["both", "plus"] = "both"
    # mapping and reads
    w_max: float | list[float] | None = None
    read_noise: float = Field(0.0, ge=0, allow_inf_nan=False)
    read_noise_kind: Literal["additive", "proportional"] = "additive"
    # the update rule
    rule: Literal["slots", "stochastic", "exact"] = "slots"
    lr: float = Field(0.1, gt=0, allow_inf_nan=False)
    lr_decay: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    x_pulses: int = Field(4, ge=1, le=64)
    d_pulses: int = Field(4, ge=1, le=64)
    loss: Literal["ce", "mse"] = "ce"
    # occasional RESET
    refresh_every: int | None = Field(None, ge=0)
    refresh_threshold: float = Field(0.9, gt=0, le=1, allow_inf_nan=False)
    refresh_mode: Literal["pulses", "ideal"] = "pulses"
    # statistics and run length (None: the study's train settings)
    saturation_tol: float = Field(0.02, ge=0, lt=0.5, allow_inf_nan=False)
    epochs: int | None = Field(None, ge=0)
    train_subset: int | None = Field(None, ge=1)
    init_scale: float = Field(1.0, ge=0, allow_inf_nan=False)
    curve: bool = True

    @model_validator(mode="after")
    def _check(self) -> OnChipConfig:
        if self.table == "file" and not self.set_table:
            raise ValueError("set_table: table = 'file' needs a set_table path")
        if self.table != "file" and (self.set_table or self.reset_table):
            raise ValueError("set_table: a table file is only read with table = 'file'")
        if self.table != "nonlinear" and (self.nonlinear_extent != 0 or self.strength != 1):
            raise ValueError("nonlinear_extent, strength: only used with table = 'nonlinear'")
        if self.w_max is None:
            pass
        elif isinstance(self.w_max, list):
            if not self.w_max or any(not (v > 0 and math.isfinite(v)) for v in self.w_max):
                raise ValueError("w_max: must be > 0 (a number or one per layer)")
        elif not (self.w_max > 0 and math.isfinite(self.w_max)):
            raise ValueError("w_max: must be > 0")
        return self

    @property
    def refresh_interval(self) -> int:
        """Examples between occasional-RESET checks (0: never)."""
        if self.refresh_every is not None:
            return self.refresh_every
        return 100 if self.device == "set_only" else 0


def parse_config(
    raw: dict[str, Any] | OnChipConfig, source: str = "scenario.onchip"
) -> OnChipConfig:
    """Validate a raw ``onchip`` table; a ValueError names the field and the problem."""
    if isinstance(raw, OnChipConfig):
        return raw
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: expected a table of settings, got {type(raw).__name__}")
    try:
        return OnChipConfig.model_validate(raw)
    except ValidationError as err:
        msgs = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "(table)"
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown setting"
            msgs.append(f"{source}.{loc}: {msg}")
        raise ValueError("; ".join(msgs)) from None


# ------------------------------------------------------------------------- tables
def build_tables(
    cfg: OnChipConfig, base: str | Path | None = None
) -> tuple[jt.JumpTable, jt.JumpTable | None, float]:
    """SET table, RESET table (None for ``float``) and the nominal SET step ``s_ref``."""
    if cfg.device == "float":
        return jt.linear(1.0 / cfg.n_steps, bins=1), None, 1.0 / cfg.n_steps
    s = 1.0 / cfg.n_steps
    kw = {"bins": cfg.bins}
    if cfg.table == "file":
        root = Path(base) if base else Path(".")
        p = Path(cfg.set_table or "")
        set_t = jt.load_jumptable(p if p.is_absolute() else root / p, bins=cfg.bins)
        if cfg.reset_table:
            q = Path(cfg.reset_table)
            reset_t = jt.load_jumptable(q if q.is_absolute() else root / q, bins=cfg.bins)
        else:
            s_file = float(set_t.mean_step().abs().median())
            reset_t = jt.linear(s_file / cfg.asymmetry, cfg.spread, reset=True, **kw)
        s_ref = float(set_t.mean_step().abs().median())
        return set_t, reset_t, s_ref
    if cfg.table == "linear":
        set_t, reset_t = jt.asymmetric(s, cfg.asymmetry, cfg.spread, **kw)
        return set_t, reset_t, s
    set_t = jt.partially_nonlinear(s, cfg.nonlinear_extent, cfg.strength, cfg.spread, **kw)
    reset_t = jt.linear(s / cfg.asymmetry, cfg.spread, reset=True, **kw)
    return set_t, reset_t, s


# ------------------------------------------------------------------------- network
_ACTS = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU: "relu"}


def describe_mlp(model: nn.Module) -> tuple[list[tuple[Tensor, Tensor]], list[str]]:
    """Weights ``(W (out, in), b (out,))`` of each Linear and the activation after each
    hidden one, for a Sequential of Flatten / Linear / Sigmoid | Tanh | ReLU."""
    mods = [m for m in model.modules() if not list(m.children())]
    layers, acts = [], []
    for m in mods:
        if isinstance(m, nn.Flatten):
            continue
        if isinstance(m, nn.Linear):
            if len(acts) < len(layers):
                raise ValueError("on-chip training needs an activation between Linear layers")
            b = m.bias if m.bias is not None else torch.zeros(m.out_features)
            layers.append((m.weight.detach().clone(), b.detach().clone()))
        elif type(m) in _ACTS:
            if len(acts) != len(layers) - 1:
                raise ValueError("on-chip training: one activation after each hidden Linear")
            acts.append(_ACTS[type(m)])
        else:
            raise ValueError(
                f"on-chip training supports MLPs of Linear and Sigmoid/Tanh/ReLU, "
                f"not {type(m).__name__}"
            )
    if not layers or len(acts) != len(layers) - 1:
        raise ValueError("on-chip training needs Linear layers with an activation between them")
    return layers, acts


def _act(name: str, a: Tensor) -> Tensor:
    if name == "sigmoid":
        return torch.sigmoid(a)
    if name == "tanh":
        return torch.tanh(a)
    return torch.relu(a)


def _dact(name: str, h: Tensor) -> Tensor:
    """Derivative of the activation, from its output ``h``."""
    if name == "sigmoid":
        return h * (1 - h)
    if name == "tanh":
        return 1 - h * h
    return (h > 0).to(h.dtype)


@dataclass
class Stats:
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
                h = _act(self.acts[k], a) if k < len(self.acts) else a
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
                hs.append(torch.cat([_act(self.acts[k], a), one]))
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
            deltas.insert(0, back * _dact(self.acts[k - 1], hs[k][:-1]))
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
    def _sround(self, v: Tensor, u: Tensor) -> Tensor:
        return (v + u).floor_().long()

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
            counts = self._exact_counts(x, delta, lr, dw, qx * qd, f_set, f_reset)
        elif cfg.rule == "stochastic":
            counts = self._stochastic_counts(x, delta, lr, dw, qx, qd, f_set, f_reset)
        else:
            counts = self._slot_counts(x, delta, lr, dw, qx, qd, f_set, f_reset)
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

    def _slot_counts(self, x, delta, lr, dw, qx, qd, f_set, f_reset):
        ax = x.abs().clamp_max_(1.0)
        ux = torch.rand(ax.shape, generator=self.gen)
        nx = self._sround(ax * qx, ux)
        rows = nx.nonzero().squeeze(1)
        if rows.numel() == 0:
            return None
        nu = (lr / (dw * qx)) * delta.abs()
        ud = torch.rand(nu.shape, generator=self.gen)
        nd_set = self._sround((nu * f_set).clamp_max_(qd), ud)
        if f_reset == f_set:
            nd_reset = nd_set
            active = nd_set > 0
        else:
            nd_reset = self._sround((nu * f_reset).clamp_max_(qd), ud)
            active = (nd_set > 0) | (nd_reset > 0)
        cols = active.nonzero().squeeze(1)
        if cols.numel() == 0:
            return None
        nxr = nx[rows]
        sign = torch.outer(torch.sign(x[rows]), torch.sign(delta[cols]))
        n_set = torch.outer(nxr, nd_set[cols])
        n_reset = n_set if nd_reset is nd_set else torch.outer(nxr, nd_reset[cols])
        return rows, cols, sign, n_set, n_reset

    def _exact_counts(self, x, delta, lr, dw, cap, f_set, f_reset):
        rows = (x != 0).nonzero().squeeze(1)
        cols = (delta != 0).nonzero().squeeze(1)
        if rows.numel() == 0 or cols.numel() == 0:
            return None
        prod = torch.outer(x[rows], delta[cols])
        v = prod.abs() * (lr / dw)
        u = torch.rand(v.shape, generator=self.gen)
        n_set = self._sround((v * f_set).clamp_max_(cap), u)
        n_reset = n_set if f_set == f_reset else self._sround((v * f_reset).clamp_max_(cap), u)
        return rows, cols, torch.sign(prod), n_set, n_reset

    def _stochastic_counts(self, x, delta, lr, dw, qx, qd, f_set, f_reset):
        """Bernoulli pulse trains in ``qx * qd`` slots; a device counts coincidences."""
        bl = qx * qd
        px = x.abs().clamp_max(1.0)
        rows = (px > 0).nonzero().squeeze(1)
        cols = (delta != 0).nonzero().squeeze(1)
        if rows.numel() == 0 or cols.numel() == 0:
            return None
        nu = (lr / (dw * bl)) * delta[cols].abs()
        bx = (torch.rand(rows.numel(), bl, generator=self.gen) < px[rows, None]).float()
        u = torch.rand(cols.numel(), bl, generator=self.gen)
        n_set = (bx @ (u < (nu * f_set).clamp_max(1.0)[:, None]).float().t()).long()
        if f_set == f_reset:
            n_reset = n_set
        else:
            n_reset = (bx @ (u < (nu * f_reset).clamp_max(1.0)[:, None]).float().t()).long()
        sign = torch.outer(torch.sign(x[rows]), torch.sign(delta[cols]))
        return rows, cols, sign, n_set, n_reset

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


def program_verify(
    table: jt.JumpTable,
    flat: Tensor,
    idx: Tensor,
    target: Tensor,
    generator: torch.Generator | None,
    max_rounds: int | None = None,
) -> int:
    """In place: SET pulses on ``flat[idx]`` while a pulse of the expected size brings the
    device closer to ``target`` (i.e. while ``target - G > step / 2``). A deterministic table
    ends within half a step of the target, a stochastic one within one step. Returns the
    pulses applied."""
    if table._constant and float(table._det_step[0]) > 0:
        # n = ceil(remaining / step - 1/2) pulses: what the loop below would apply.
        s = float(table._det_step[0])
        n = torch.ceil((target.to(flat.dtype) - flat[idx]) / s - 0.5).clamp_min(0).long()
        return jt.apply_pulses(table, flat, idx, n, generator)
    mean = table.mean_step().to(flat.dtype)
    if max_rounds is None:
        smallest = float(mean.abs().clamp_min(1e-12).min())
        max_rounds = int(math.ceil((table.g_max - table.g_min) / smallest)) * 2 + 10
    total = 0
    idx, target = idx.clone(), target.to(flat.dtype).clone()
    for _ in range(max_rounds):
        g = flat[idx]
        go = (target - g) > 0.5 * mean[table.bin_index(g)]
        if not bool(go.any()):
            break
        idx, target, g = idx[go], target[go], g[go]
        flat[idx] = table.step(g, generator)
        total += idx.numel()
    return total


# ------------------------------------------------------------------------- training driver
@dataclass
class OnChipResult:
    test_accuracy: float
    train_accuracy: float
    curve: list[float]
    stats: Stats
    diamond: dict[str, float]
    network: OnChipNetwork


def init_layers(arch: str, kwargs: dict[str, Any], seed: int) -> tuple[list, list[str]]:
    """Initial weights of a registry MLP, drawn with ``seed`` (global RNG untouched)."""
    from nvmsim.models import build

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(arch, **kwargs)
    return describe_mlp(model)


def train_onchip(
    cfg: OnChipConfig | dict[str, Any],
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor] | None = None,
    *,
    arch: str = "mlp528",
    kwargs: dict[str, Any] | None = None,
    layers: list[tuple[Tensor, Tensor]] | None = None,
    acts: list[str] | None = None,
    epochs: int = 20,
    seed: int = 0,
    init_seed: int | None = None,
    base: str | Path | None = None,
) -> OnChipResult:
    """Train a network on chip for ``epochs`` and report its accuracies and statistics.

    The initial weights are those of ``arch`` (a registry MLP) drawn with ``init_seed``
    (default ``seed``), or the given ``layers`` / ``acts``; ``seed`` drives the example order,
    stochastic rounding and the jump-tables' deviates. ``curve`` holds the test accuracy
    after each epoch when ``cfg.curve`` (and a test set) is given.
    """
    cfg = parse_config(cfg)
    if layers is None:
        layers, acts = init_layers(arch, kwargs or {}, seed if init_seed is None else init_seed)
    elif acts is None:
        raise ValueError("give acts with layers")
    assert acts is not None
    gen = torch.Generator().manual_seed(seed % (2**63))
    set_t, reset_t, s_ref = build_tables(cfg, base)
    net = OnChipNetwork(layers, acts, cfg, gen, set_t, reset_t, s_ref)
    x, y = train
    x = x.reshape(len(x), -1).float()
    curve = []
    lr = cfg.lr
    for _ in range(epochs):
        net.train_epoch(x, y, lr)
        lr *= cfg.lr_decay
        if cfg.curve and test is not None:
            curve.append(net.accuracy(*test))
    test_acc = (curve[-1] if curve else net.accuracy(*test)) if test is not None else math.nan
    return OnChipResult(test_acc, net.accuracy(x, y), curve, net.stats, net.diamond(), net)


def evaluate_onchip(tree: dict[str, Any], data: DataFn, seed: int) -> dict[str, Any]:
    """The study runner's hook: train on chip ``tree["repeats"]`` times, test each."""
    from nvmsim.data import preprocess

    sc = tree.get("scenario", {})
    cfg = parse_config(sc.get("onchip") or {})
    arch = tree["source"]["arch"]
    if not arch:
        raise ValueError("scenario.onchip: on-chip training needs a registry arch (models.*.arch)")
    train_spec = tree.get("train", {})
    epochs = cfg.epochs if cfg.epochs is not None else int(train_spec.get("epochs", 20))
    subset = cfg.train_subset or train_spec.get("train_subset")
    xtr, ytr = data("train", subset)
    xte, yte = data("test", tree.get("data", {}).get("test_subset"))
    prep = preprocess.fit(tree.get("data", {}).get("preprocess", "unit"), xtr)
    xtr, xte = prep(xtr), prep(xte)
    base = tree.get("base_dir")
    accs, train_accs, curves, results = [], [], [], []
    for r in range(int(tree.get("repeats", 1))):
        # Initial weights depend on the study seed and repeat only: every point of a sweep
        # starts from the same networks (common random numbers across the sweep).
        s = _sub_seed(seed, r)
        s_init = _sub_seed(int(tree.get("seed", 0)), r, "init")
        res = train_onchip(
            cfg,
            (xtr, ytr),
            (xte, yte),
            arch=arch,
            kwargs=tree.get("kwargs", {}),
            epochs=epochs,
            seed=s,
            init_seed=s_init,
            base=base,
        )
        accs.append(res.test_accuracy)
        train_accs.append(res.train_accuracy)
        curves.append(res.curve)
        results.append(res)
    n = len(accs)
    ex = sum(r.stats.examples for r in results) or 1
    secs = [t for r in results for t in r.stats.epoch_seconds]
    out: dict[str, Any] = {
        "accuracy": statistics.fmean(accs),
        "accuracy_std": statistics.stdev(accs) if n > 1 else 0.0,
        "accuracy_all": accs,
        "train_accuracy": statistics.fmean(train_accs),
        "train_accuracy_std": statistics.stdev(train_accs) if n > 1 else 0.0,
        "train_accuracy_all": train_accs,
        "repeats": n,
        "epochs": epochs,
        "train_images": len(ytr),
        "test_images": len(yte),
        "saturated_fraction": statistics.fmean(r.diamond["saturated_fraction"] for r in results),
        "collapsed_fraction": statistics.fmean(r.diamond["collapsed_fraction"] for r in results),
        "pulses_per_example": sum(r.stats.pulses for r in results) / ex,
        "set_pulses_per_example": sum(r.stats.set_pulses for r in results) / ex,
        "reset_pulses_per_example": sum(r.stats.reset_pulses for r in results) / ex,
        "refreshes": statistics.fmean(r.stats.refreshes for r in results),
        "refresh_pulses": statistics.fmean(r.stats.refresh_pulses for r in results),
        "compensation_factor": results[0].network.c if results else 1.0,
        "seconds_per_epoch": statistics.fmean(secs) if secs else 0.0,
    }
    if curves and all(curves):
        out["test_accuracy_curve"] = [statistics.fmean(v) for v in zip(*curves, strict=True)]
    return out


def _sub_seed(*parts: Any) -> int:
    import hashlib

    h = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 2


def plot_jumptable(table: jt.JumpTable, path: str | Path, **kwargs: Any) -> Path:
    """Fig. 7-style figure of a jump-table (:func:`.onchip_plot.plot_jumptable`)."""
    from nvmsim.training.onchip_plot import plot_jumptable as _plot

    return _plot(table, path, **kwargs)
