"""State shared by analog layers: config, tile, seeds, and when to (re)program."""

from __future__ import annotations

import torch
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.crossbar.products import Product
from nvmsim.crossbar.sliced import make_tile
from nvmsim.seeds import generator_on


class WeightGradient(torch.autograd.Function):
    """Pass the analog read ``y`` through unchanged and give the layer's weight and bias the
    gradient of the digital product ``x (*) W + b`` (straight-through: the mapping,
    programming, noise and converters count as identity for the weights). Inputs keep the
    gradient of the analog read itself."""

    @staticmethod
    def forward(ctx, y, x, weight, bias, product):  # noqa: D102
        ctx.save_for_backward(x, weight)
        ctx.product, ctx.has_bias = product, bias is not None
        return y.view_as(y)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        x, w = ctx.saved_tensors
        gw = gb = None
        if ctx.needs_input_grad[2]:
            gw = ctx.product.weight_grad(x, g, w.shape)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            gb = g.sum(dim=(0, *range(2, g.dim())))
        return g, None, gw, gb, None


class AnalogMixin:
    """Holds an :class:`~nvmsim.crossbar.tile.AnalogTile` or, for bit-sliced weights and
    bit-serial inputs, a :class:`~nvmsim.crossbar.sliced.SlicedTile` (a submodule ``tile``
    whose buffers are not persistent, so ``state_dict`` keeps torch's keys); programs it from
    ``self.weight`` when needed.

    The programming draw comes from a generator seeded with ``seed`` (so ``program()`` is
    reproducible); read noise comes from ``self.generator``, seeded with ``seed + 1``, on the
    layer's device (moving the layer to another device restarts that stream from its seed).
    Changing the weights in place (an optimiser step, ``load_state_dict``) reprograms the
    tile before the next forward pass; moving or casting the layer does not.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None

    def _init_analog(self, config: AnalogConfig | None, seed: int | None, product: Product) -> None:
        self.config = config or AnalogConfig()
        self.seed = self.config.seed if seed is None else int(seed)
        self.tile = make_tile(self.config, product, bias_row=self._analog_bias())
        self.generator = torch.Generator(device=self.weight.device).manual_seed(self.seed + 1)
        self._programmed_version: tuple[int, int] | None = None
        self.register_buffer("input_range", None, persistent=False)  # type: ignore[attr-defined]

    def set_input_range(self, value: float | torch.Tensor | None) -> None:
        """Fix this layer's DAC input range (a range learned in hardware-aware training), or
        ``None`` to calibrate it as the config says. A ``Parameter`` stays one and is trained
        through the DAC's clamp (PACT's gradient); anything else is a buffer, not in
        ``state_dict``. Used only with a DAC whose ``dac_range`` is ``"auto"``."""
        self._buffers.pop("input_range", None)  # type: ignore[attr-defined]
        self._parameters.pop("input_range", None)  # type: ignore[attr-defined]
        if isinstance(value, nn.Parameter):
            self.register_parameter("input_range", value)  # type: ignore[attr-defined]
            return
        if value is not None:
            w = self.weight
            value = torch.as_tensor(value, dtype=w.dtype, device=w.device).detach().clone()
            if value.dim() or not bool(torch.isfinite(value)) or float(value) <= 0:
                raise ValueError(f"input range must be a finite number > 0, got {value}")
        self.register_buffer("input_range", value, persistent=False)  # type: ignore[attr-defined]

    def input_range_applies(self) -> bool:
        """Whether a fixed input range can set this layer's DAC: a DAC whose range is
        ``"auto"``, without noise management (which fixes the range at 1)."""
        conv = self.config.converter
        return (
            conv.dac_bits is not None and conv.dac_range == "auto"
            and conv.noise_management == "none"
        )  # fmt: skip

    def fixed_dac_range(self) -> torch.Tensor | None:
        """The fixed (or trained) DAC range this layer reads with, if it has one in use."""
        return self.input_range if self.input_range_applies() else None

    @classmethod
    def from_torch(cls, layer, config: AnalogConfig | None = None, seed: int | None = None):
        """Analog copy of a torch layer (same arguments, weights, device and dtype), programmed."""
        w = layer.weight
        new = cls(*cls._torch_args(layer), device=w.device, dtype=w.dtype, config=config, seed=seed)
        with torch.no_grad():
            new.weight.copy_(layer.weight)
            if layer.bias is not None:
                new.bias.copy_(layer.bias)
        new.train(layer.training)
        return new.program()

    def _analog_bias(self) -> bool:
        return self.bias is not None and self.config.crossbar.bias == "analog"

    def _matrix(self) -> torch.Tensor:
        """The (out, rows) matrix that goes onto the crossbar (bias as a last row if analog)."""
        w = self.weight.detach().reshape(self.weight.shape[0], -1)
        if self._analog_bias():
            w = torch.cat([w, self.bias.detach().unsqueeze(1)], dim=1)
        return w

    def _version(self) -> tuple[int, int]:
        b = self.bias._version if self.bias is not None else 0
        return (self.weight._version, b)

    def program(self, generator: torch.Generator | None = None, hold_read: bool = False):
        """Draw programming error, quantisation and faults once; returns ``self``. With
        ``hold_read``, reads use one held draw of the read noise (see :meth:`hold_read`)."""
        if generator is None:
            generator = torch.Generator(device=self.weight.device).manual_seed(self.seed)
        generator = generator_on(generator, self.weight.device)
        hold = self.generator if hold_read else None
        self.tile.program(self._matrix(), generator, hold=hold)  # refuses NaN or inf weights
        self._programmed_version = self._version()
        return self

    def drift_to(self, t_seconds: float, hold_read: bool = False):
        """Conductance drift to ``t_seconds`` after programming; returns ``self``. With
        ``hold_read``, reads use one held draw of the read noise (see :meth:`hold_read`)."""
        self._ensure_programmed()
        self.tile.drift_to(t_seconds, self.generator if hold_read else None)
        return self

    def hold_read(self):
        """Draw the read noise of every device once, from the read-noise stream, and read with
        that draw until the next programming or drift (see
        :meth:`~nvmsim.crossbar.tile.AnalogTile.hold_read`); returns ``self``."""
        self._ensure_programmed()
        self.tile.hold_read(self.generator)
        return self

    def reseed(self, seed: int) -> None:
        """Restart the read-noise stream (programming is unchanged)."""
        self.generator.manual_seed(int(seed))

    def is_current(self) -> bool:
        """Whether the programmed chip holds the weights as they are now."""
        copied = self.__dict__.pop("_copied_current", None)
        if copied is not None:  # the first check of a copy: fresh weights count from 0
            self._programmed_version = tuple(0 for _ in self._version()) if copied else None
        return self._programmed_version == self._version()

    def __getstate__(self) -> dict:
        """A copy (``deepcopy``) carries whether the chip was current: the copy's weights
        are new tensors whose version counters start again at 0, so without this it would
        reprogram itself, losing its drift time and calibrated converter ranges."""
        state = self.__dict__.copy()
        state["_copied_current"] = self.is_current()
        return state

    def _ensure_programmed(self) -> None:
        if not self.is_current() or not self.tile.programmed:
            self.program()

    def _read(self, x: torch.Tensor) -> torch.Tensor:
        """One analog read of ``x``; with gradients on, the weight and bias get the
        straight-through gradient (:class:`WeightGradient`), so a torch optimiser trains
        through the analog forward (the tile is reprogrammed after each step)."""
        y = self.tile.read(
            x, self.generator, self._digital_bias(), dac_range=self.fixed_dac_range()
        )
        return self._with_weight_gradient(y, x)

    def read_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean and variance of one read of ``x``, drawing nothing
        (:meth:`~nvmsim.crossbar.tile.AnalogTile.read_moments`): a read that another array's
        adds to (:func:`~nvmsim.crossbar.tile.add_reads`). The mean carries the weight's
        gradient as a read does."""
        self._ensure_programmed()
        mean, var = self.tile.read_moments(x, self._digital_bias())
        return self._with_weight_gradient(mean, x), var

    def _with_weight_gradient(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b = self.bias
        wants = self.weight.requires_grad or (b is not None and b.requires_grad)
        if not (torch.is_grad_enabled() and wants):
            return y
        return WeightGradient.apply(y, x.detach(), self.weight, b, self.tile.product)

    def _digital_bias(self) -> torch.Tensor | None:
        return None if self.bias is None or self._analog_bias() else self.bias.detach()

    def _apply(self, fn, recurse: bool = True):
        current = self.is_current()
        super()._apply(fn, recurse)  # type: ignore[misc]
        if self.generator.device != self.weight.device:
            self.generator = torch.Generator(device=self.weight.device).manual_seed(self.seed + 1)
        if current:  # a move or cast is not a new weight: keep the programmed chip
            self._programmed_version = self._version()
        return self

    def extra_repr(self) -> str:
        return super().extra_repr() + f", device={self.config.device.name}"  # type: ignore[misc]
