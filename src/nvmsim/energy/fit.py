"""Paper 000 Table III, and the fit of the technology constants to it.

:func:`fit_table3` recomputes the ``reram`` / ``sonos`` constants of
:mod:`nvmsim.energy.technology` from the operation counts of our models;
:func:`compare_table3` puts our estimates beside every cell of the table. Both build the
paper's models by name (``nvmsim.models``), imported when called.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import nnls

from nvmsim.config import AnalogConfig
from nvmsim.energy.counters import ConvMapping, OpCounts, count_ops
from nvmsim.energy.technology import technology


@dataclass(frozen=True)
class Table3Row:
    """One row of paper 000 Table III ("energy overhead per inference op")."""

    total_nj: float
    vmm_nj: float
    neuron_pj: float


#: Paper 000 Table III. RNN figures are for t = 7 ("worst case"); softmax and max-pooling
#: are taken as negligible.
PAPER_TABLE3: dict[tuple[str, str], Table3Row] = {
    ("MLP", "reram"): Table3Row(4.24, 4.22, 15.0),
    ("RNN", "reram"): Table3Row(35.6, 35.5, 66.0),
    ("CNN", "reram"): Table3Row(480.0, 479.0, 358.0),
    ("MLP", "sonos"): Table3Row(6.04, 6.02, 15.0),
    ("RNN", "sonos"): Table3Row(42.7, 42.7, 66.0),
    ("CNN", "sonos"): Table3Row(2084.0, 2084.0, 358.0),
}

#: Our models for the table's rows: the MLP of Table II (784-128-10, 101,770 parameters; its
#: VMM figures imply it, see docs/energy.md), the Mosaics RNN at t = 7 and the CNN.
TABLE3_MODELS: dict[str, tuple[str, dict]] = {
    "MLP": ("mlp128", {}),
    "RNN": ("mosaics_rnn", {"t": 7}),
    "CNN": ("cnn000", {}),
}

#: The neuron figures are fitted with Table I's MLP (784-300-10): 15 pJ = 300 x 0.05 pJ.
NEURON_MODELS: dict[str, tuple[str, dict]] = {"MLP": ("mlp300", {}), "CNN": ("cnn000", {})}

#: Count fields that the VMM fit uses, in the order of the fitted constants.
FIT_FEATURES: tuple[str, ...] = ("cell_reads", "adc_all_columns")


def paper_counts(
    rows: dict[str, tuple[str, dict]] | None = None,
    conv_mapping: ConvMapping = "im2col",
    config: AnalogConfig | None = None,
) -> dict[str, OpCounts]:
    """Per-sample counts of the Table III models (``{"MLP": ..., "RNN": ..., "CNN": ...}``)."""
    from nvmsim.models import build

    rows = TABLE3_MODELS if rows is None else rows
    x = torch.zeros(1, 1, 28, 28)
    return {
        key: count_ops(build(name, **kw), x, conv_mapping, config)
        for key, (name, kw) in rows.items()
    }


def _nnls_relative(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Non-negative ``c`` minimising ``sum((features @ c / targets - 1) ** 2)``."""
    coef, _ = nnls(features / targets[:, None], np.ones(len(targets)))
    return coef


@dataclass(frozen=True)
class Table3Fit:
    """Fitted constants of one technology, with the data and residuals of the fit."""

    device: str
    features: tuple[str, ...]
    constants_pj: tuple[float, ...]  # one per feature (e_cell, e_adc)
    e_neuron_pj: float
    counts: dict[str, tuple[float, ...]]  # model -> feature counts
    paper_vmm_nj: dict[str, float]
    fitted_vmm_nj: dict[str, float]

    @property
    def residuals(self) -> dict[str, float]:
        """Relative VMM residual per model, ``ours / paper - 1``."""
        return {k: self.fitted_vmm_nj[k] / v - 1 for k, v in self.paper_vmm_nj.items()}


def fit_table3(
    devices: Sequence[str] = ("reram", "sonos"),
    conv_mapping: ConvMapping = "im2col",
    config: AnalogConfig | None = None,
    features: Sequence[str] = FIT_FEATURES,
) -> dict[str, Table3Fit]:
    """Fit ``features``' energies (pJ) to Table III's VMM figures, per technology.

    With the defaults this reproduces the ``reram`` / ``sonos`` presets (to their four
    significant digits). Other ``conv_mapping`` / ``config`` / ``features`` show how the fit
    changes (``docs/energy.md`` lists the variants that were tried).
    """
    counts = paper_counts(conv_mapping=conv_mapping, config=config)
    keys = list(TABLE3_MODELS)
    feats = np.array([[counts[k].total(f) for f in features] for k in keys], dtype=float)
    ncounts = paper_counts(NEURON_MODELS, conv_mapping, config)
    nkeys = list(NEURON_MODELS)
    acts = np.array([[ncounts[k].total("activations")] for k in nkeys], dtype=float)
    out = {}
    for device in devices:
        paper = np.array([PAPER_TABLE3[(k, device)].vmm_nj * 1e3 for k in keys])
        coef = _nnls_relative(feats, paper)
        neuron = np.array([PAPER_TABLE3[(k, device)].neuron_pj for k in nkeys])
        e_neuron = float(_nnls_relative(acts, neuron)[0])
        pred = feats @ coef
        out[device] = Table3Fit(
            device=device,
            features=tuple(features),
            constants_pj=tuple(float(c) for c in coef),
            e_neuron_pj=e_neuron,
            counts={k: tuple(float(v) for v in feats[i]) for i, k in enumerate(keys)},
            paper_vmm_nj={k: float(paper[i] / 1e3) for i, k in enumerate(keys)},
            fitted_vmm_nj={k: float(pred[i] / 1e3) for i, k in enumerate(keys)},
        )
    return out


@dataclass(frozen=True)
class Table3Cell:
    """Our estimate beside one row of Table III."""

    row: str  # "MLP" | "RNN" | "CNN"
    device: str
    ours_total_nj: float
    ours_vmm_nj: float
    ours_neuron_pj: float
    paper: Table3Row

    @property
    def total_error(self) -> float:
        return self.ours_total_nj / self.paper.total_nj - 1

    @property
    def vmm_error(self) -> float:
        return self.ours_vmm_nj / self.paper.vmm_nj - 1

    @property
    def neuron_error(self) -> float:
        return self.ours_neuron_pj / self.paper.neuron_pj - 1


def compare_table3(
    devices: Sequence[str] = ("reram", "sonos"),
    conv_mapping: ConvMapping = "im2col",
    config: AnalogConfig | None = None,
) -> list[Table3Cell]:
    """Our estimates (preset constants) for every cell of Table III."""
    from nvmsim.energy.model import report_from_counts

    counts = paper_counts(conv_mapping=conv_mapping, config=config)
    cells = []
    for device in devices:
        tech = technology(device)
        for row, c in counts.items():
            rep = report_from_counts(c, tech, model_name=TABLE3_MODELS[row][0])
            cells.append(
                Table3Cell(
                    row=row,
                    device=tech.name,
                    ours_total_nj=rep.total_pj / 1e3,
                    ours_vmm_nj=rep.vmm_pj / 1e3,
                    ours_neuron_pj=rep.neuron_pj,
                    paper=PAPER_TABLE3[(row, tech.name)],
                )
            )
    return cells


def paper_row(model_name: str, t: int | None = None) -> str | None:
    """The Table III row that ``model_name`` (with ``t``) stands for, if any."""
    for row, (name, kw) in TABLE3_MODELS.items():
        if name != model_name:
            continue
        if "t" in kw:
            if (7 if t is None else t) == kw["t"]:  # MosaicsRNN's default t is 7
                return row
        elif t is None:
            return row
    return None
