"""DAC on the rows and ADC on the columns: uniform symmetric quantisers with saturation."""

from __future__ import annotations

import math

import torch


def quantize_symmetric(
    x: torch.Tensor, bits: int, full_range: torch.Tensor | float
) -> torch.Tensor:
    """Clamp to ``[-range, range]`` and round to ``2**(bits-1) - 1`` steps on each side.

    A 1-bit converter is a sign (plus zero) quantiser with levels ``{-range, 0, range}``.
    """
    codes, lsb = quantize_codes(x, bits, full_range)
    return codes.mul_(lsb)


def quantize_codes(
    x: torch.Tensor, bits: int, full_range: torch.Tensor | float, inplace: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer codes (as floats, in ``[-steps, steps]``) and the LSB of
    :func:`quantize_symmetric`; ``codes * lsb`` is the quantised value. Dividing first and
    clamping the codes gives the same codes as clamping ``x`` to the range first.
    ``inplace`` overwrites ``x`` with the codes."""
    if not 1 <= bits <= 16:
        raise ValueError(f"converter bits must be in 1..16, got {bits}")
    steps = max(2 ** (bits - 1) - 1, 1)
    r = torch.as_tensor(full_range, dtype=x.dtype, device=x.device)
    lsb = r / steps
    codes = x.div_(lsb) if inplace else x.div(lsb)
    return codes.clamp_(-steps, steps).round_(), lsb


def calibrated_range(
    x: torch.Tensor, dims: tuple[int, ...] | None = None, percentile: float | None = None
) -> torch.Tensor:
    """Range that covers ``x``: max |x| over ``dims`` (all when None), or that percentile of
    |x| (larger values saturate); 1.0 where it is zero."""
    a = x.detach().abs()
    if percentile is not None:
        keep = [d for d in range(a.dim()) if dims is not None and d not in dims]
        flat = a.permute(*keep, *[d for d in range(a.dim()) if d not in keep])
        flat = flat.reshape(*[a.shape[d] for d in keep], -1)
        k = max(1, math.ceil(percentile / 100 * flat.shape[-1]))
        m = flat.kthvalue(k, dim=-1).values
        m = m.reshape([a.shape[d] if d in keep else 1 for d in range(a.dim())])
    else:
        m = a.amax() if dims is None else a.amax(dim=dims, keepdim=True)
    return torch.where(m > 0, m, torch.ones_like(m))


def input_codes(
    x: torch.Tensor, bits: int, full_range: torch.Tensor, encoding: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A DAC's integer codes of ``x`` (detached), its LSB and the input range ``[lo, hi]`` the
    codes cover: symmetric ``[-S, S]`` (``"twos_complement"``, as :func:`quantize_symmetric`)
    or ``[0, 2**bits - 1]`` over ``[0, range]`` (``"unsigned"``; negative inputs give 0)."""
    if encoding == "unsigned":
        top = 2**bits - 1
        lsb = full_range / top
        codes = x.detach().div(lsb).clamp_(0, top).round_()
        return codes, lsb, torch.zeros_like(full_range), full_range
    codes, lsb = quantize_codes(x.detach(), bits, full_range)
    return codes, lsb, -full_range, full_range


def fixed_or_calibrated(x: torch.Tensor, value: float | str) -> torch.Tensor:
    """A converter range: ``value``, or max |x| when it is ``"auto"``."""
    if value == "auto":
        return calibrated_range(x)
    return torch.tensor(float(value), dtype=x.dtype, device=x.device)
