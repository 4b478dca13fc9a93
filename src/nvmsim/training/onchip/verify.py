"""Program-and-verify: SET pulses on devices until each is as close to its target as one
more pulse could bring it (occasional RESET reprograms weights this way)."""

from __future__ import annotations

import math

import torch

from nvmsim.devices import jumptable as jt

Tensor = torch.Tensor


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
