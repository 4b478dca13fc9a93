"""A device preset as a figure: conductance vs time (drift, retention) and noise std vs G."""

from __future__ import annotations

from pathlib import Path

import torch

from nvmsim.devices import behaviour
from nvmsim.figures import pyplot, save

SECONDS_PER_YEAR = 3.156e7


def plot_device(dev, path: str | Path, *, dpi: int = 90) -> Path:
    """Write one PNG for ``dev`` (a DeviceConfig): G(t) from four start levels, with a band of
    drift exponent +-1 std, and the std of programming error and of one read vs G."""
    plt = pyplot()

    t = behaviour.log_times()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.0))
    g0 = torch.tensor([dev.g_min, 0.25, 0.5, 1.0], dtype=torch.float64)
    mid = behaviour.conductance_vs_time(dev, g0, t)
    lo = behaviour.conductance_vs_time(dev, g0, t, nu_z=1.0)
    hi = behaviour.conductance_vs_time(dev, g0, t, nu_z=-1.0)
    for i, g in enumerate(g0.tolist()):
        (line,) = ax1.plot(t, mid[i], label=f"G0 = {g:.3g}")
        if dev.drift_nu_std > 0:
            ax1.fill_between(t, lo[i], hi[i], color=line.get_color(), alpha=0.2, lw=0)
    for x, lab in ((3600, "1 h"), (86400, "1 d"), (SECONDS_PER_YEAR, "1 y")):
        ax1.axvline(x, color="0.8", lw=0.8, zorder=0)
        ax1.text(x, 1.02, lab, fontsize=7, ha="center", transform=ax1.get_xaxis_transform())
    ax1.set_xscale("log")
    ax1.set_ylim(0, 1.3)
    ax1.set_xlabel("time after programming (s)")
    ax1.set_ylabel("G / Gmax")
    ax1.legend(fontsize=7, loc="upper center", ncol=4, columnspacing=0.8, handlelength=1.2)
    g = torch.linspace(dev.g_min, 1.0, 200, dtype=torch.float64)
    ax2.plot(g, 100 * behaviour.programming_std(dev, g), label="programming error")
    ax2.plot(g, 100 * behaviour.read_std(dev, g), label="one read")
    ax2.set_xlabel("G / Gmax")
    ax2.set_ylabel("std (% of Gmax)")
    ax2.set_ylim(bottom=0)
    ax2.legend(fontsize=7)
    fig.suptitle(f"{dev.name}: drift (band: nu ± 1 std) / retention, and noise", fontsize=9)
    return save(fig, path, dpi)
