"""A device's behaviour as curves (for tables, docs and plots): conductance vs time and noise
std vs conductance, computed from a :class:`~nvmsim.config.DeviceConfig` with the same pure
functions that the simulator uses."""

from __future__ import annotations

import math

import torch

from nvmsim.devices import drift, noise


def _std(cfg, g: torch.Tensor) -> torch.Tensor:
    table = {}
    if cfg.kind == "table":
        table = {"g_points": cfg.g_points, "sigma_points": cfg.sigma_points}
    elif cfg.kind == "polynomial":
        table = {"coeffs": cfg.coeffs}
    if not cfg.active:
        return torch.zeros_like(g)
    return noise.noise_std(g, cfg.kind, cfg.sigma, **table)


def conductance_vs_time(dev, g0: torch.Tensor, t: torch.Tensor, nu_z: float = 0.0) -> torch.Tensor:
    """``(len(g0), len(t))`` conductances of devices programmed to ``g0`` (normalised), with
    drift exponent ``nu + nu_z * nu_std`` (clipped at 0) and retention towards its target."""
    nu = torch.full_like(g0, max(0.0, dev.drift_nu + nu_z * dev.drift_nu_std))
    target = dev.retention.target
    g_inf = dev.g_min if target == "gmin" else (1 + dev.g_min) / 2 if target == "mid" else target
    cols = [
        drift.evolve(g0, float(ti), nu, dev.drift_t0, dev.retention.tau, float(g_inf))
        for ti in t.tolist()
    ]
    return torch.stack(cols, dim=1)


def programming_std(dev, g: torch.Tensor) -> torch.Tensor:
    """Std of the programming error at conductance ``g`` (units of Gmax; 0 for ``weight``)."""
    pe = dev.programming_error
    return torch.zeros_like(g) if pe.kind == "weight" else _std(pe, g)


def read_std(dev, g: torch.Tensor) -> torch.Tensor:
    """Std of one read at conductance ``g`` before clipping: Gaussian read noise, 1/f noise
    and telegraph noise (variance ``p (1 - p) dG**2``) together."""
    var = _std(dev.read_noise, g).square()
    fl = dev.flicker_noise
    if fl.active:
        var = var + noise.flicker_std(g, fl.k, fl.f_min, fl.f_max).square()
    tn = dev.telegraph_noise
    if tn.active:
        var = var + tn.p * (1 - tn.p) * noise.telegraph_shift(g, tn.kind, tn.delta).square()
    return var.sqrt()


def log_times(t_min: float = 1.0, t_max: float = 3.156e8, n: int = 60) -> torch.Tensor:
    """``n`` times log-spaced from ``t_min`` to ``t_max`` seconds (default 1 s to 10 years)."""
    return torch.logspace(math.log10(t_min), math.log10(t_max), n, dtype=torch.float64)
