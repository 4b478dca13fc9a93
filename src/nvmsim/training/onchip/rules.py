"""The three pulse rules of an update: how many SET and RESET pulses each device of an
array receives for one example, from the upstream activations ``x`` and the downstream
errors ``delta``.

Each returns ``(rows, cols, sign, n_set, n_reset)`` (the rows and columns that fire, the sign
of ``x_i * delta_j`` and pulse counts per device of that block), or None when nothing fires.
``dw`` is the weight change of one nominal pulse, ``f_set`` / ``f_reset`` the asymmetry
compensation factors; deviates come from ``gen`` in a fixed order (results are reproducible).
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor
#: rows, cols, sign, n_set, n_reset of one update
Counts = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


def sround(v: Tensor, u: Tensor) -> Tensor:
    """Stochastic rounding of ``v`` with uniform deviates ``u``: ``floor(v + u)`` (exact in
    expectation)."""
    return (v + u).floor_().long()


def slot_counts(x, delta, lr, dw, qx, qd, f_set, f_reset, gen: torch.Generator) -> Counts | None:
    """Time slots (the default rule): ``nx_i * nd_j`` coincidences of the upstream and
    downstream pulse trains (module doc of :mod:`nvmsim.training.onchip`)."""
    ax = x.abs().clamp_max_(1.0)
    ux = torch.rand(ax.shape, generator=gen)
    nx = sround(ax * qx, ux)
    rows = nx.nonzero().squeeze(1)
    if rows.numel() == 0:
        return None
    nu = (lr / (dw * qx)) * delta.abs()
    ud = torch.rand(nu.shape, generator=gen)
    nd_set = sround((nu * f_set).clamp_max_(qd), ud)
    if f_reset == f_set:
        nd_reset = nd_set
        active = nd_set > 0
    else:
        nd_reset = sround((nu * f_reset).clamp_max_(qd), ud)
        active = (nd_set > 0) | (nd_reset > 0)
    cols = active.nonzero().squeeze(1)
    if cols.numel() == 0:
        return None
    nxr = nx[rows]
    sign = torch.outer(torch.sign(x[rows]), torch.sign(delta[cols]))
    n_set = torch.outer(nxr, nd_set[cols])
    n_reset = n_set if nd_reset is nd_set else torch.outer(nxr, nd_reset[cols])
    return rows, cols, sign, n_set, n_reset


def exact_counts(x, delta, lr, dw, cap, f_set, f_reset, gen: torch.Generator) -> Counts | None:
    """``sround(lr * |x_i * delta_j| / dw)`` pulses per device (at most ``cap``): the
    expected update of the slot rule, without its quantisation of ``x`` and ``delta``."""
    rows = (x != 0).nonzero().squeeze(1)
    cols = (delta != 0).nonzero().squeeze(1)
    if rows.numel() == 0 or cols.numel() == 0:
        return None
    prod = torch.outer(x[rows], delta[cols])
    v = prod.abs() * (lr / dw)
    u = torch.rand(v.shape, generator=gen)
    n_set = sround((v * f_set).clamp_max_(cap), u)
    n_reset = n_set if f_set == f_reset else sround((v * f_reset).clamp_max_(cap), u)
    return rows, cols, torch.sign(prod), n_set, n_reset


def stochastic_counts(
    x, delta, lr, dw, qx, qd, f_set, f_reset, gen: torch.Generator
) -> Counts | None:
    """Bernoulli pulse trains in ``qx * qd`` slots; a device counts coincidences."""
    bl = qx * qd
    px = x.abs().clamp_max(1.0)
    rows = (px > 0).nonzero().squeeze(1)
    cols = (delta != 0).nonzero().squeeze(1)
    if rows.numel() == 0 or cols.numel() == 0:
        return None
    nu = (lr / (dw * bl)) * delta[cols].abs()
    bx = (torch.rand(rows.numel(), bl, generator=gen) < px[rows, None]).float()
    u = torch.rand(cols.numel(), bl, generator=gen)
    n_set = (bx @ (u < (nu * f_set).clamp_max(1.0)[:, None]).float().t()).long()
    if f_set == f_reset:
        n_reset = n_set
    else:
        n_reset = (bx @ (u < (nu * f_reset).clamp_max(1.0)[:, None]).float().t()).long()
    sign = torch.outer(torch.sign(x[rows]), torch.sign(delta[cols]))
    return rows, cols, sign, n_set, n_reset
