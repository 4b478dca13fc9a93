"""Figures of jump-tables (paper 004, Fig. 7 style) and of families of conductance responses."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from nvmsim.devices.jumptable import JumpTable
from nvmsim.figures import pyplot, save


def _trajectory_band(table: JumpTable, pulses: int, devices: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    tr = table.trajectory(pulses, devices, generator=gen)
    q = torch.quantile(tr, torch.tensor([0.1587, 0.5, 0.8413], dtype=tr.dtype), dim=1)
    return q[0].numpy(), q[1].numpy(), q[2].numpy()


def _default_pulses(table: JumpTable) -> int:
    n = table.pulses_to_traverse()
    return int(min(5000, max(10, 1.2 * n))) if n != float("inf") else 1000


def plot_jumptable(
    table: JumpTable,
    path: str | Path,
    *,
    reset: JumpTable | None = None,
    pulses: int | None = None,
    devices: int = 200,
    seed: int = 0,
    dpi: int = 90,
) -> Path:
    """Draw ``table`` as in paper 004's Fig. 7 and write a PNG to ``path``.

    Left: conductance vs pulse number from ``g_min`` (median of ``devices`` simulated cells,
    shaded +-1 sigma, i.e. the 15.9-84.1 % band). Right: the jump-table as a colour map of the
    cumulative probability of ``dG`` (x) at each conductance ``G`` (y). With ``reset``, a
    second row shows the RESET table (pulses from ``g_max``).
    """
    plt = pyplot()

    tables = [("SET", table)] + ([("RESET", reset)] if reset is not None else [])
    fig, axes = plt.subplots(len(tables), 2, figsize=(9, 3.4 * len(tables)), squeeze=False)
    for row, (label, t) in enumerate(tables):
        n = pulses if pulses is not None else _default_pulses(t)
        lo, med, hi = _trajectory_band(t, n, devices, seed)
        ax = axes[row][0]
        x = range(n + 1)
        ax.fill_between(x, lo, hi, color="tab:red", alpha=0.3, label="±1σ")
        ax.plot(x, med, color="tab:blue", lw=1.5, label="median")
        ax.set_xlabel("pulse number")
        ax.set_ylabel("G (normalised)")
        ax.set_title(t.name or f"{label} jump-table", fontsize=9)
        ax.legend(fontsize=8, loc="best")
        ax = axes[row][1]
        dmin, dmax = float(t.dg.min()), float(t.dg.max())
        pad = 0.05 * max(dmax - dmin, abs(dmax), 1e-12)
        grid = torch.linspace(dmin - pad, dmax + pad, 200, dtype=torch.float64)
        c = t.cdf_at(grid).numpy()
        mesh = ax.pcolormesh(
            grid.numpy(), t.g_edges.numpy(), c[:, :-1], vmin=0, vmax=1, cmap="viridis"
        )
        ax.set_xlabel("ΔG per pulse")
        ax.set_ylabel("G before the pulse")
        ax.set_title("cumulative probability of ΔG", fontsize=9)
        fig.colorbar(mesh, ax=ax, fraction=0.05)
    return save(fig, path, dpi)


def plot_responses(
    tables: Mapping[str, JumpTable],
    path: str | Path,
    *,
    title: str = "",
    pulses: int | None = None,
    dpi: int = 90,
) -> Path:
    """Median conductance vs pulse number for several tables (Figs. 8-11 (a) style)."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 3.4))
    n = pulses if pulses is not None else max(_default_pulses(t) for t in tables.values())
    for label, t in tables.items():
        tr = t.trajectory(n, 1, generator=torch.Generator().manual_seed(0))[:, 0]
        ax.plot(range(n + 1), tr.numpy(), lw=1.3, label=label)
    ax.set_xlabel("pulse number")
    ax.set_ylabel("G (normalised)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return save(fig, path, dpi)


def read_runs_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a run export (``nvmsim report --export runs.csv``)."""
    import csv

    with Path(path).open(newline="") as fh:
        return list(csv.DictReader(fh))


def _percent(run: dict[str, str], metric: str) -> float:
    """A metric in percent from an export: ``<metric>_pct``, or an older export's fraction."""
    if f"{metric}_pct" in run:
        return float(run[f"{metric}_pct"])
    return 100 * float(run[metric])


def plot_accuracy_panels(
    panels: list[dict],
    path: str | Path,
    *,
    dpi: int = 90,
) -> Path:
    """One panel per study export: test (solid) and train (dashed) accuracy vs an axis.

    Each panel is a dict with ``csv`` (an export), ``x`` (axis column, e.g.
    ``"axis.scenario.onchip.asymmetry"``), optional ``group`` (axis columns that split the
    lines), ``title``, ``xlabel``, ``logx``, ``invert`` (x axis), ``train`` (draw train
    accuracy, default True) and ``claim`` (text drawn in the panel).
    """
    plt = pyplot()

    cols = min(2, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        runs = read_runs_csv(panel["csv"])
        groups: dict[tuple, list[dict[str, str]]] = {}
        for r in runs:
            key = tuple(r.get(g, "") for g in panel.get("group", []))
            groups.setdefault(key, []).append(r)
        for i, (key, rs) in enumerate(sorted(groups.items())):
            rs = sorted(rs, key=lambda r: float(r[panel["x"]]))
            x = [float(r[panel["x"]]) for r in rs]
            te = [_percent(r, "accuracy") for r in rs]
            tr = [_percent(r, "train_accuracy") for r in rs]
            label = ", ".join(
                f"{g.split('.')[-1]}={v}" for g, v in zip(panel.get("group", []), key, strict=True)
            )
            color = f"C{i}"
            ax.plot(x, te, "o-", color=color, label=f"test {label}".strip())
            if panel.get("train", True):
                lab = f"train {label}".strip()
                ax.plot(x, tr, "s--", color=color, mfc="none", alpha=0.7, label=lab)
        if panel.get("logx"):
            ax.set_xscale("log")
            ticks = sorted({float(r[panel["x"]]) for r in runs})
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=7)
            ax.minorticks_off()
        if panel.get("invert"):
            ax.invert_xaxis()
        ax.set_xlabel(panel.get("xlabel", panel["x"].split(".")[-1]))
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.set_title(panel.get("title", ""), fontsize=9)
        if panel.get("claim"):
            ax.text(0.02, 0.03, panel["claim"], transform=ax.transAxes, fontsize=7, va="bottom")
        ax.legend(fontsize=6, loc="center left")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    return save(fig, path, dpi)


def paper004_figures(exports: str | Path, out: str | Path) -> list[Path]:
    """The results figures of docs/onchip.md from run exports of the ``onchip_*`` studies.

    ``exports`` holds ``<study>.csv`` files written by ``nvmsim report STUDY --export``
    (``onchip_ideal``, ``onchip_asymmetry``, ``onchip_extent``, ``onchip_strength``,
    ``onchip_nonlinear``, optionally ``onchip_pcm``); writes ``onchip_results.png`` (Figs.
    8-11 (c)) and ``onchip_ideal_pcm.png`` to ``out``.
    """
    exports, out = Path(exports), Path(out)
    ax = "axis.scenario.onchip."
    panels = [
        {
            "csv": exports / "onchip_asymmetry.csv",
            "x": ax + "asymmetry",
            "group": [ax + "pair_update", ax + "compensate"],
            "logx": True,
            "invert": True,
            "train": False,
            "xlabel": "asymmetry (SET step / RESET step)",
            "title": "Fig. 8(c): linear SET and RESET, RESET steeper (test accuracy)",
        },
        {
            "csv": exports / "onchip_extent.csv",
            "x": ax + "nonlinear_extent",
            "group": [ax + "strength"],
            "xlabel": "relative extent of the nonlinear SET region",
            "title": "Fig. 9(c): extent of the nonlinear region",
        },
        {
            "csv": exports / "onchip_strength.csv",
            "x": ax + "strength",
            "logx": True,
            "invert": True,
            "xlabel": "min/max SET step (25 % nonlinear region)",
            "title": "Fig. 10(c): strength of the nonlinearity",
        },
        {
            "csv": exports / "onchip_nonlinear.csv",
            "x": ax + "strength",
            "logx": True,
            "invert": True,
            "xlabel": "min/max SET step (fully nonlinear)",
            "title": "Fig. 11(c): fully nonlinear SET response",
        },
    ]
    paths = [plot_accuracy_panels(panels, out / "onchip_results.png")]
    extra = [
        {
            "csv": exports / "onchip_ideal.csv",
            "x": ax + "n_steps",
            "group": [ax + "device"],
            "logx": True,
            "xlabel": "dynamic range (linear steps from Gmin to Gmax)",
            "title": "ideal linear devices vs software (float)",
        }
    ]
    if (exports / "onchip_pcm.csv").is_file():
        extra.append(
            {
                "csv": exports / "onchip_pcm.csv",
                "x": ax + "spread",
                "group": [ax + "nonlinear_extent"],
                "xlabel": "stochastic spread of a SET step (relative std)",
                "title": "SET-only pairs with occasional RESET (PCM-like)",
            }
        )
    paths.append(plot_accuracy_panels(extra, out / "onchip_ideal_pcm.png"))
    return paths
