"""Write crossbar netlists and run ngspice: an independent oracle for the IR-drop solver."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

NGSPICE = shutil.which("ngspice")

_VALUE = re.compile(r"^\s*i\(vs(\d+)\)\s*=\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def _full(r: float | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.broadcast_to(np.asarray(r, dtype=np.float64), shape)


def crossbar_netlist(
    G: np.ndarray,
    v: np.ndarray,
    r_row: float | np.ndarray,
    r_col: float | np.ndarray,
    *,
    both_ends: bool = False,
    r_access: float | np.ndarray = 0.0,
) -> str:
    """SPICE netlist of the crossbar, written from the circuit's definition (not the solver).

    Row ``i`` node ``(i, j)`` is ``a_i_j``; column node ``(i, j)`` is ``b_i_j``. The bottom of
    column ``j`` goes through ``r_col[N-1, j]`` into a 0 V source ``VS<j>`` whose current is
    the column current. With ``both_ends`` the right end of row ``i`` is fed from the same
    source through ``r_row[i, M]`` (shape (N, M+1)) or ``r_row[i, 0]``.
    """
    n, m = G.shape
    rr = np.asarray(r_row, dtype=np.float64)
    right = None
    if both_ends:
        right = rr[:, m] if rr.ndim == 2 and rr.shape[1] == m + 1 else _full(rr, (n, m))[:, 0]
        if rr.ndim == 2 and rr.shape[1] == m + 1:
            rr = rr[:, :m]
    rr = _full(rr, (n, m))
    rc = _full(r_col, (n, m))
    ra = _full(r_access, (n, m))
    lines = ["* nvmsim crossbar IR-drop check"]
    for i in range(n):
        lines.append(f"VIN{i} in{i} 0 DC {v[i]:.17g}")
        lines.append(f"RR{i}_0 in{i} a_{i}_0 {rr[i, 0]:.17g}")
        for j in range(1, m):
            lines.append(f"RR{i}_{j} a_{i}_{j - 1} a_{i}_{j} {rr[i, j]:.17g}")
        if right is not None:
            lines.append(f"RRR{i} a_{i}_{m - 1} in{i} {right[i]:.17g}")
    for i in range(n):
        for j in range(m):
            if G[i, j] > 0:
                if ra[i, j] > 0:
                    lines.append(f"RA{i}_{j} a_{i}_{j} x_{i}_{j} {ra[i, j]:.17g}")
                    lines.append(f"RG{i}_{j} x_{i}_{j} b_{i}_{j} {1.0 / G[i, j]:.17g}")
                else:
                    lines.append(f"RG{i}_{j} a_{i}_{j} b_{i}_{j} {1.0 / G[i, j]:.17g}")
    for j in range(m):
        for i in range(n - 1):
            lines.append(f"RC{i}_{j} b_{i}_{j} b_{i + 1}_{j} {rc[i, j]:.17g}")
        lines.append(f"RC{n - 1}_{j} b_{n - 1}_{j} s{j} {rc[n - 1, j]:.17g}")
        lines.append(f"VS{j} s{j} 0 DC 0")
    probes = " ".join(f"i(vs{j})" for j in range(m))
    lines += [".control", "set numdgt=16", "op", f"print {probes}", ".endc", ".end", ""]
    return "\n".join(lines)


def run_ngspice(netlist: str, workdir: Path, m: int) -> np.ndarray:
    """Run ``ngspice -b`` on a netlist and return the ``m`` sense currents (amperes)."""
    if NGSPICE is None:
        raise RuntimeError("ngspice is not on PATH")
    path = workdir / "crossbar.cir"
    path.write_text(netlist)
    proc = subprocess.run(
        [NGSPICE, "-b", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    found = {int(k): float(val) for k, val in _VALUE.findall(proc.stdout)}
    # ngspice 39 exits with 1 after a batch run with a .control block, so judge by the output.
    if len(found) != m or re.search(r"^\s*error", proc.stdout + proc.stderr, re.I | re.M):
        raise RuntimeError(
            f"ngspice failed (rc={proc.returncode}, {len(found)}/{m} currents parsed):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return np.array([found[j] for j in range(m)])
