"""``nvmsim demo``: train a small MLP on the embedded digits, then read it on analog devices."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
from scipy import stats

from nvmsim.config import AnalogConfig, validate
from nvmsim.data import load
from nvmsim.models import mlp
from nvmsim.nn.convert import convert, program
from nvmsim.training.software import accuracy, train


def accuracy_ci(acc: float, n: int) -> tuple[float, float]:
    """95 % Wilson interval of an accuracy measured on ``n`` test images: how far the true
    accuracy may be from one measured on so few images (test-set sampling alone)."""
    ci = stats.binomtest(round(acc * n), n).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass
class DemoRow:
    setting: str
    mean: float
    std: float
    repeats: int


def analog_accuracy(model, config: AnalogConfig, x, y, repeats: int) -> tuple[float, float]:
    """Accuracy over ``repeats`` device instances (programming draws) and read-noise streams."""
    analog = convert(model, config)
    accs = []
    for r in range(repeats):
        program(analog, torch.Generator().manual_seed(10_000 + r))
        accs.append(accuracy(analog, x, y))
    return statistics.fmean(accs), (statistics.stdev(accs) if repeats > 1 else 0.0)


DEMO_SETTINGS: dict[str, dict] = {
    "ideal analog (no noise)": {},
    "ReRAM preset": {"device": "reram"},
    "SONOS preset": {"device": "sonos"},
    "PCM preset, 1 day of drift": {"device": "pcm"},
    "read noise 10 % (proportional)": {
        "device": {"read_noise": {"sigma": 0.1}, "on_off_ratio": 10}
    },
    "read noise 30 % (proportional)": {
        "device": {"read_noise": {"sigma": 0.3}, "on_off_ratio": 10}
    },
    "prog. error 30 % + 4-bit levels": {
        "device": {"programming_error": {"sigma": 0.3}, "bits": 4, "on_off_ratio": 10}
    },
    "4-bit DAC and ADC": {"converter": {"dac_bits": 4, "adc_bits": 4}},
}


TEST_IMAGES = 360  # scikit-learn digits' test split in nvmsim.data


def run_demo(epochs: int = 40, repeats: int = 10, seed: int = 0) -> tuple[float, list[DemoRow]]:
    """Software accuracy and analog accuracy (mean, std over ``repeats``) on digits' test."""
    xtr, ytr = load("digits", "train")
    xte, yte = load("digits", "test")
    if len(yte) != TEST_IMAGES:
        raise RuntimeError(f"digits test split has {len(yte)} images, expected {TEST_IMAGES}")
    torch.manual_seed(seed)
    model = mlp((64, 64, 10))
    train(model, xtr, ytr, epochs=epochs, batch_size=32, lr=3e-3, seed=seed)
    software = accuracy(model, xte, yte)
    rows = []
    for name, raw in DEMO_SETTINGS.items():
        cfg = validate(AnalogConfig, {**raw, "seed": seed})
        if name.startswith("PCM"):
            analog = convert(model, cfg)
            accs = []
            for r in range(repeats):
                program(analog, torch.Generator().manual_seed(10_000 + r))
                for layer in analog.modules():
                    if hasattr(layer, "drift_to"):
                        layer.drift_to(86_400.0)
                accs.append(accuracy(analog, xte, yte))
            m, s = statistics.fmean(accs), statistics.stdev(accs)
        else:
            m, s = analog_accuracy(model, cfg, xte, yte, repeats)
        rows.append(DemoRow(name, m, s, repeats))
    return software, rows
