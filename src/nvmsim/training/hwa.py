"""Hardware-aware (HWA) training: train a network through its own analog forward pass.

The forward pass is the crossbar read of the training device (mapping, programming error,
drift to ``t_train``, read noise, DAC/ADC); the backward pass gives the weights the digital
product's gradient (straight-through, :class:`nvmsim.nn.base.WeightGradient`) and the inputs
the read's own gradient (straight-through for converter rounding). Before every batch each
layer maps its current weights onto conductances with a fresh programming draw, so the network
learns weights that work on any instance of the device (Joshi et al., Nat. Commun. 11, 2473
(2020); aihwkit's ``InferenceRPUConfig``). The result is a plain torch model: program it onto
the evaluation device like any other.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from nvmsim.config import AnalogConfig, DeviceConfig
from nvmsim.nn import convert
from nvmsim.nn.base import AnalogMixin
from nvmsim.nn.input_range import attach_ranges
from nvmsim.seeds import derive_seed
from nvmsim.training.software import TrainResult
from nvmsim.training.software import train as train_software

_FINITE = {"allow_inf_nan": False}


class Injection(BaseModel):
    """What the training forward pass injects, each switchable and scalable.

    ``programming``: a fresh programming draw before every ``batch``, one per ``epoch``, or the
    ``fixed`` instance of the layer's seed. ``programming_scale`` / ``read_scale`` multiply the
    device's programming-error / read-noise sizes (0 turns them off; above 1 trains on a harsher
    device than the evaluation one). ``t_train``: drift the conductances to this time (s) before
    each read (with the device's drift compensation if it has it). ``output_noise``: Gaussian
    noise on every analog layer's output, std ``output_noise * max|y|`` of the batch.
    ``clip_sigma``: after every step clip each analog layer's weights to ``clip_sigma`` of
    their standard deviation (aihwkit's ``WeightClipType.LAYER_GAUSSIAN``; Joshi et al. use
    2.5 to 3.5), which keeps a few large weights from setting the conductance range.
    ``read_noise``: fresh for every read (``"read"``: every output and time step draws its
    own, the evaluation device's read, by the moment identity) or one draw of every device
    per mini-batch (``"batch"``: the whole forward pass reads with it, as the weight noise of
    Joshi et al.; a read is then one noiseless product, much faster, see ``nvmsim bench``).
    ``noise_gradient``: the input gradient of a noisy read is that of the sampled read, noise
    term included (``"sample"``), or of the expected read only (``"expected"``, aihwkit's
    ideal backward: a faster backward pass, and lower accuracy in docs/results.md); a held
    read (``read_noise = "batch"``) has no noise term, so this applies to per-read noise.

    ``input_range = "learned"`` (needs a DAC: ``converter.dac_bits`` with ``dac_range =
    "auto"``) gives every analog layer a trainable DAC range, as aihwkit's
    ``InputRangeParameter``: it starts at ``input_range_init`` standard deviations of the
    layer's first training inputs; the clamp passes it the summed gradient of the inputs it
    clips (PACT, Choi et al., arXiv:1805.06085 (2018)), and while more than
    ``input_min_share`` of the inputs lie inside it, ``input_range_decay * range`` is added
    to its gradient (aihwkit's decay), so that it shrinks where little is clipped (a finer
    DAC step). The trained model carries the ranges (:mod:`nvmsim.nn.input_range`) and
    :func:`nvmsim.convert` uses them instead of calibrating on the first batch.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    programming: Literal["batch", "epoch", "fixed"] = "batch"
    programming_scale: float = Field(1.0, ge=0.0, **_FINITE)
    read_scale: float = Field(1.0, ge=0.0, **_FINITE)
    read_noise: Literal["read", "batch"] = "read"
    t_train: float = Field(0.0, ge=0.0, **_FINITE)
    output_noise: float = Field(0.0, ge=0.0, **_FINITE)
    clip_sigma: float | None = Field(None, gt=0.0, **_FINITE)
    noise_gradient: Literal["sample", "expected"] = "sample"
    input_range: Literal["calibrated", "learned"] = "calibrated"
    input_range_init: float = Field(3.0, gt=0.0, **_FINITE)
    input_range_decay: float = Field(0.01, ge=0.0, **_FINITE)
    input_min_share: float = Field(0.95, gt=0.0, le=1.0)


class Recipe(Injection):
    """An HWA training run: the optimiser settings of :func:`software.train` plus the
    injection; every draw follows from ``seed``."""

    epochs: int = Field(10, ge=0)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0.0, **_FINITE)
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    seed: int = Field(0, ge=0, lt=2**63)


def _scaled(values: tuple[float, ...], s: float) -> tuple[float, ...]:
    return tuple(v * s for v in values)


def training_config(config: AnalogConfig, injection: Injection) -> AnalogConfig:
    """``config`` with programming error and read noise (Gaussian and 1/f) scaled as the
    injection asks, and without drift exponents to draw when ``t_train`` is 0 (a read at
    t = 0 does not depend on them); every other setting as it is."""
    dev: DeviceConfig = config.device
    pe, rn, fl = dev.programming_error, dev.read_noise, dev.flicker_noise
    ps, rs = injection.programming_scale, injection.read_scale

    def noise(cfg, s):
        return cfg.model_copy(
            update={
                "sigma": cfg.sigma * s,
                "sigma_points": _scaled(cfg.sigma_points, s),
                "coeffs": _scaled(cfg.coeffs, s),
            }
        )

    update = {
        "programming_error": noise(pe, ps),
        "read_noise": noise(rn, rs),
        "flicker_noise": fl.model_copy(update={"k": fl.k * rs**2}),  # std ~ sqrt(k)
    }
    if injection.t_train == 0:  # reads at t = 0 do not depend on the drift exponents
        update |= {"drift_nu": 0.0, "drift_nu_std": 0.0}
    device = dev.model_copy(update=update)
    return config.model_copy(update={"device": device})


class _LearnedRange:
    """A layer's trainable DAC range: set from its first inputs, decayed while it clips
    little (see :class:`Injection`)."""

    def __init__(self, layer: AnalogMixin, injection: Injection) -> None:
        if not layer.input_range_applies():
            raise ValueError(
                "input_range = 'learned' needs a DAC with an automatic range and no noise "
                "management (converter.dac_bits set, dac_range = 'auto', noise_management = "
                "'none')"
            )
        if layer.config.sliced:
            raise ValueError(
                "input_range = 'learned' does not apply to bit-sliced or bit-serial tiles "
                "(crossbar.weight_slices > 1 or converter.input_bits_per_read set)"
            )
        w = layer.weight
        self.param = nn.Parameter(torch.ones((), dtype=w.dtype, device=w.device))
        layer.set_input_range(self.param)
        self.injection, self.started = injection, False
        self.inside = torch.zeros((), device=w.device)
        self.hooks = [layer.register_forward_pre_hook(self._observe)]
        self.param.register_hook(self._decay)

    def _observe(self, module: nn.Module, args: tuple) -> None:
        x = args[0].detach()
        with torch.no_grad():
            if not self.started:
                std = float(x.std()) if x.numel() > 1 else 0.0
                self.param.fill_(self.injection.input_range_init * std if std > 0 else 1.0)
                self.started = True
            self.inside = (x.abs() < self.param).float().mean()  # a tensor: no GPU sync

    def _decay(self, grad: torch.Tensor) -> torch.Tensor:
        on = (self.inside > self.injection.input_min_share).to(grad.dtype)
        return grad + on * (self.injection.input_range_decay * self.param.detach())


class _Chip:
    """The analog layers of the model being trained and the draws between steps."""

    def __init__(self, model: nn.Module, injection: Injection, seed: int) -> None:
        named = [(n, m) for n, m in model.named_modules() if isinstance(m, AnalogMixin)]
        self.layers = [m for _, m in named]
        self.ranges: dict[str, _LearnedRange] = {}
        if injection.input_range == "learned":
            self.ranges = {n: _LearnedRange(m, injection) for n, m in named}
        self.injection = injection
        self.seeds = [derive_seed("hwa-programming", seed, i) for i in range(len(self.layers))]
        pairs = zip(self.layers, self.seeds, strict=True)
        self.streams = [self._generator(layer, s) for layer, s in pairs]
        for i, layer in enumerate(self.layers):
            layer.reseed(derive_seed("hwa-read", seed, i))
            layer.tile.noise_gradient = injection.noise_gradient
        self.out_gen: torch.Generator | None = None
        self.hooks = []
        if injection.output_noise > 0:
            device = self.layers[0].weight.device if self.layers else torch.device("cpu")
            self.out_gen = torch.Generator(device=device).manual_seed(
                derive_seed("hwa-output", seed)
            )
            self.hooks = [layer.register_forward_hook(self._output_noise) for layer in self.layers]

    @staticmethod
    def _generator(layer: nn.Module, seed: int) -> torch.Generator:
        return torch.Generator(device=layer.weight.device).manual_seed(seed)

    def program(self, epoch: int) -> None:
        """Map every layer's current weights with this batch's programming draw (and, with
        ``read_noise = "batch"``, draw its read noise for the batch)."""
        mode, t = self.injection.programming, self.injection.t_train
        batch = self.injection.read_noise == "batch"
        for layer, seed, stream in zip(self.layers, self.seeds, self.streams, strict=True):
            if mode == "batch":
                gen = stream
            else:
                gen = self._generator(layer, seed if mode == "fixed" else seed + epoch + 1)
            layer.program(gen, hold_read=batch and t == 0)
            if t > 0:
                layer.drift_to(t, hold_read=batch)

    @torch.no_grad()
    def clip(self) -> None:
        k = self.injection.clip_sigma
        if k is None:
            return
        for layer in self.layers:
            w = layer.weight
            bound = k * float(w.std()) if w.numel() > 1 else float("inf")
            w.clamp_(-bound, bound)

    def _output_noise(self, module: nn.Module, inputs, y: torch.Tensor) -> torch.Tensor | None:
        if not module.training:
            return None
        scale = self.injection.output_noise * y.detach().abs().amax()
        eps = torch.randn(y.shape, generator=self.out_gen, dtype=y.dtype, device=y.device)
        return y + scale * eps

    def close(self) -> None:
        for h in self.hooks + [h for r in self.ranges.values() for h in r.hooks]:
            h.remove()

    def learned(self) -> dict[str, float]:
        """The trained DAC range of every layer that learned one."""
        return {name: float(r.param.detach()) for name, r in self.ranges.items()}


def fit(
    model: nn.Module,
    analog_config: AnalogConfig,
    data: tuple[torch.Tensor, torch.Tensor],
    recipe: Recipe | None = None,
    *,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    patience: int | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train ``model`` in place, hardware-aware, on ``analog_config``'s device; returns the
    loss history (``val`` accuracies are read on the training device)."""
    recipe = recipe or Recipe()
    x, y = data
    config = training_config(analog_config, recipe).model_copy(
        update={"seed": derive_seed("hwa-chip", recipe.seed) % 2**62}
    )
    analog = convert(model, config)  # a programmed copy; model is untouched until the end
    chip = _Chip(analog, recipe, recipe.seed)
    try:
        result = train_software(
            analog, x, y, epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
            optimizer=recipe.optimizer, momentum=recipe.momentum, seed=recipe.seed, val=val,
            patience=patience, progress=progress, before_batch=chip.program,
            after_step=chip.clip,
        )  # fmt: skip
    finally:
        chip.close()
    skip = {f"{name}.input_range" for name in chip.ranges}
    model.load_state_dict({k: v for k, v in analog.state_dict().items() if k not in skip})
    if chip.ranges:
        attach_ranges(model, chip.learned())
    model.eval()
    return result


def train(
    model: nn.Module,
    analog_config: AnalogConfig,
    data: tuple[torch.Tensor, torch.Tensor],
    recipe: Recipe | None = None,
) -> nn.Module:
    """Hardware-aware training of ``model`` (in place) on ``data = (x, y)``; returns the
    trained torch model, digital, ready to be saved or programmed onto any device."""
    fit(model, analog_config, data, recipe)
    return model
