"""``nvmsim bench``: speed of analog inference as a ratio to plain torch in the same run.

Each case is timed interleaved with its torch baseline (baseline, case, baseline, case, ...)
and both are reported as medians, so load on the machine affects both alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from nvmsim.config import AnalogConfig, validate
from nvmsim.models import build
from nvmsim.nn.convert import convert


@dataclass
class BenchRow:
    group: str
    case: str
    seconds: float
    baseline_seconds: float
    items: int
    reads: int = 1  # array reads per input the scheme itself needs (slices x input planes)

    @property
    def ratio(self) -> float:
        return self.seconds / self.baseline_seconds

    @property
    def ratio_per_read(self) -> float:
        """The ratio over the work the scheme implies: what the simulator adds to it."""
        return self.ratio / self.reads

    @property
    def per_second(self) -> float:
        return self.items / self.seconds

    def as_dict(self) -> dict:
        return {
            **asdict(self), "ratio": self.ratio, "ratio_per_read": self.ratio_per_read,
            "per_second": self.per_second,
        }  # fmt: skip


def reads_per_input(config: AnalogConfig) -> int:
    """Reads of every array per input vector: one per weight slice and input plane."""
    return config.crossbar.weight_slices * config.input_reads


def time_interleaved(
    baseline: Callable[[], object], case: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median wall time of ``baseline`` and ``case``, run alternately ``repeats`` times."""
    baseline(), case()  # warm-up: allocations, lazy init, calibration
    tb, tc = [], []
    for _ in range(repeats):
        s = time.perf_counter()
        baseline()
        tb.append(time.perf_counter() - s)
        s = time.perf_counter()
        case()
        tc.append(time.perf_counter() - s)
    return statistics.median(tb), statistics.median(tc)


def _cfg(device: dict, **extra) -> AnalogConfig:
    return validate(AnalogConfig, {"device": device, **extra})


def _joint(config: AnalogConfig) -> AnalogConfig:
    """``config`` with recurrent layers on joint ``[W_ih | W_hh]`` arrays."""
    crossbar = config.crossbar.model_copy(update={"recurrent": "joint"})
    return config.model_copy(update={"crossbar": crossbar})


PROG = {"kind": "proportional", "sigma": 0.02}
ADD = {"kind": "additive", "sigma": 0.02}
PROP = {"kind": "proportional", "sigma": 0.02}

INFERENCE_CASES: dict[str, AnalogConfig] = {
    "ideal analog": _cfg({}),
    "prog. error + additive read noise": _cfg(
        {"programming_error": PROG, "read_noise": ADD, "on_off_ratio": 10}
    ),
    "prog. error + proportional read noise": _cfg(
        {"programming_error": PROG, "read_noise": PROP, "on_off_ratio": 10}
    ),
    "read noise + 8-bit DAC/ADC": _cfg(
        {"read_noise": PROP, "on_off_ratio": 10}, converter={"dac_bits": 8, "adc_bits": 8}
    ),
    "IR drop, 1 ohm wires (reads after solve)": _cfg(
        {"on_off_ratio": 10}, crossbar={"r_row": 1.0, "r_col": 1.0}
    ),
}

#: ISAAC-style core: 4 slices of 2-bit cells, 8-bit inputs one bit per read, 8-bit SAR ADCs
#: on 128 x 128 arrays (32 reads of every array per input)
ISAAC = "ISAAC-style: 4 x 2-bit slices, bit-serial 8-bit inputs, 8-bit ADC"
ISAAC_CASE = {ISAAC: validate(AnalogConfig, {"preset": "isaac"})}


def bench_model(
    group: str,
    model: nn.Module,
    x: torch.Tensor,
    cases: dict[str, AnalogConfig],
    repeats: int,
) -> list[BenchRow]:
    """Time each analog configuration of ``model`` against ``model`` itself on ``x``."""
    model.eval()
    rows = []
    with torch.no_grad():
        for name, cfg in cases.items():
            analog = convert(model, cfg).eval()
            tb, tc = time_interleaved(lambda: model(x), lambda a=analog: a(x), repeats)
            rows.append(BenchRow(group, name, tc, tb, len(x), reads_per_input(cfg)))
    return rows


RESNET_CASES: dict[str, AnalogConfig] = {
    "ideal analog": _cfg({}),
    "prog. error + additive read noise": INFERENCE_CASES["prog. error + additive read noise"],
    "prog. error + proportional read noise": INFERENCE_CASES[
        "prog. error + proportional read noise"
    ],
    "8-bit DAC + 8-bit ADC (256-row arrays)": _cfg(
        {}, converter={"dac_bits": 8, "adc_bits": 8}, crossbar={"tile_rows": 256}
    ),
    "read noise + 8-bit DAC/ADC (256-row arrays)": INFERENCE_CASES["read noise + 8-bit DAC/ADC"],
}


def run_resnet_benchmarks(
    batch: int = 64, repeats: int = 5, width: int = 64, seed: int = 0
) -> list[BenchRow]:
    """CIFAR ResNet-18 (11.2 M weights at ``width=64``) on a 32x32 batch, eval mode."""
    torch.manual_seed(seed)
    model = build("resnet18", width=width)
    x = torch.rand(batch, 3, 32, 32)
    label = "ResNet-18 CIFAR" + (f" (width {width})" if width != 64 else "")
    rows = bench_model(f"{label}, batch {batch}", model, x, RESNET_CASES, repeats)
    return rows + bench_model(f"{label}, batch {batch}", model, x, ISAAC_CASE, max(2, repeats // 2))


@dataclass
class ProgramRow:
    """Seconds to convert (map, draw and program every layer of) a model, min and median."""

    case: str
    weights: int
    seconds_min: float
    seconds_median: float

    def as_dict(self) -> dict:
        return asdict(self)


def time_convert(case: str, model: nn.Module, config: AnalogConfig, repeats: int = 3) -> ProgramRow:
    """Wall time of :func:`convert` (deep copy, mapping, programming draws, read moments)."""
    times = []
    for _ in range(repeats):
        s = time.perf_counter()
        convert(model, config)
        times.append(time.perf_counter() - s)
    n = sum(p.numel() for p in model.parameters())
    return ProgramRow(case, n, min(times), statistics.median(times))


def run_program_benchmarks(width: int = 64, repeats: int = 3) -> list[ProgramRow]:
    """Programming ResNet-18 with the reram preset and with programming error + read noise."""
    model = build("resnet18", width=width)
    cases = {
        "ResNet-18, reram preset": validate(AnalogConfig, {"device": "reram"}),
        "ResNet-18, prog. error + additive read noise": INFERENCE_CASES[
            "prog. error + additive read noise"
        ],
    }
    return [time_convert(k, model, c, repeats) for k, c in cases.items()]


def run_inference_benchmarks(n: int = 10_000, repeats: int = 15, seed: int = 0) -> list[BenchRow]:
    """The reference set: MLP 784-300-10 and 784-128-10, paper 000's CNN, an LSTM (hidden
    128) reading the image row by row (28 steps) against torch's own ``nn.LSTM`` (split and
    joint arrays), and a
    2-layer transformer encoder over the rows (on a fifth of the inputs) against torch's
    ``nn.TransformerEncoder`` (its inference fast path)."""
    torch.manual_seed(seed)
    x = torch.rand(n, 1, 28, 28)
    mlp = build("mlp300")
    rows = bench_model("MLP 784-300-10", mlp, x, INFERENCE_CASES, repeats)
    rows += bench_model("MLP 784-300-10", mlp, x, ISAAC_CASE, max(3, repeats // 5))
    mlp128_cases = {k: INFERENCE_CASES[k] for k in list(INFERENCE_CASES)[1:3]}
    rows += bench_model("MLP 784-128-10", build("mlp128"), x, mlp128_cases, repeats)
    cnn_cases = {
        "read noise (proportional)": _cfg({"read_noise": PROP, "on_off_ratio": 10}),
        "prog. error + additive read noise": INFERENCE_CASES["prog. error + additive read noise"],
    }
    rows += bench_model(
        "CNN 000 (119,322 params)", build("cnn000"), x, cnn_cases, max(3, repeats // 3)
    )
    lstm_cases = {k: INFERENCE_CASES[k] for k in list(INFERENCE_CASES)[1:3]}
    joint = {f"{k}, joint arrays": _joint(c) for k, c in lstm_cases.items()}
    rows += bench_model(
        "LSTM 128 over 28 rows (torch: nn.LSTM)", build("lstm_rows"), x, lstm_cases | joint,
        max(3, repeats // 3),
    )  # fmt: skip
    rows += bench_model(
        "Transformer 2x64 over 28 rows (torch: nn.TransformerEncoder)",
        build("transformer_rows"), x[: max(1, n // 5)], lstm_cases, max(3, repeats // 3),
    )  # fmt: skip
    return rows


@dataclass
class TrainRow:
    """One training epoch, hardware-aware against plain torch, interleaved medians."""

    case: str
    examples: int
    seconds: float
    baseline_seconds: float

    @property
    def ratio(self) -> float:
        return self.seconds / self.baseline_seconds

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def _fashion(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` Fashion-MNIST training images, or random images of that shape if absent."""
    from nvmsim.data import DatasetError, load

    try:
        return load("fashion-mnist", "train", subset=n, seed=seed)
    except DatasetError:
        g = torch.Generator().manual_seed(seed)
        return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def run_hwa_benchmark(n: int = 60_000, repeats: int = 3, seed: int = 0) -> list[TrainRow]:
    """One epoch (Adam, batch 128) of paper 000's CNN on ``n`` Fashion-MNIST images, trained
    hardware-aware on the PCM preset (programming error redrawn per batch) against the same
    epoch in plain torch: read noise on every read, with each input-gradient choice, and one
    read-noise draw per batch (held for its forward pass)."""
    from nvmsim.training import hwa
    from nvmsim.training.software import train

    x, y = _fashion(n, seed)
    torch.manual_seed(seed)
    model = build("cnn000")
    pcm = validate(AnalogConfig, {"device": "pcm"})

    def plain() -> None:
        train(model, x, y, epochs=1, batch_size=128, seed=seed)

    cases = {
        "read noise per read, sampled-read gradient": {"noise_gradient": "sample"},
        "read noise per read, expected-read gradient": {"noise_gradient": "expected"},
        "read noise drawn per batch": {"read_noise": "batch"},
    }
    rows = []
    for what, injection in cases.items():
        recipe = hwa.Recipe(epochs=1, batch_size=128, seed=seed, **injection)
        tb, tc = time_interleaved(plain, lambda r=recipe: hwa.fit(model, pcm, (x, y), r), repeats)
        case = f"CNN 000, PCM preset: prog. error per batch + {what}, batch 128"
        rows.append(TrainRow(case, n, tc, tb))
    return rows
