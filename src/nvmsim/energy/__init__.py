"""Operation counters and technology constants: energy per inference and per training example.

``estimate(model, "reram")`` counts what one sample makes the crossbars do (cell reads, row
drives, ADC conversions, MACs, neuron activations) and prices it with constants fitted to
paper 000's Table III (docs/energy.md has the derivation and the residuals).
"""

from nvmsim.energy.counters import (
    CONV_MAPPINGS,
    ConvMapping,
    LayerOps,
    OpCounter,
    OpCounts,
    count_ops,
)
from nvmsim.energy.model import (
    EnergyReport,
    LayerEnergy,
    LayerTraining,
    TrainingReport,
    estimate,
    report_from_counts,
    training_energy_per_example,
)
from nvmsim.energy.report import energy_cli, format_energy, render_table, render_training
from nvmsim.energy.technology import (
    GPU_PJ_PER_MAC,
    TECHNOLOGIES,
    Technology,
    technology,
    technology_names,
)

__all__ = [
    "CONV_MAPPINGS",
    "GPU_PJ_PER_MAC",
    "TECHNOLOGIES",
    "ConvMapping",
    "EnergyReport",
    "LayerEnergy",
    "LayerOps",
    "LayerTraining",
    "OpCounter",
    "OpCounts",
    "Technology",
    "TrainingReport",
    "count_ops",
    "energy_cli",
    "estimate",
    "format_energy",
    "render_table",
    "render_training",
    "report_from_counts",
    "technology",
    "technology_names",
    "training_energy_per_example",
]
