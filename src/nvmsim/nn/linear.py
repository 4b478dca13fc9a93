"""``AnalogLinear``: ``nn.Linear`` computed on a programmed crossbar."""

from __future__ import annotations

import torch
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.nn.base import AnalogMixin


class AnalogLinear(AnalogMixin, nn.Linear):
    """Same signature and ``state_dict`` keys as :class:`torch.nn.Linear`, plus ``config``.

    Gradients flow to the input (the crossbar is read like any matmul), not to the weights:
    the programmed conductances are fixed until the next ``program()``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device=None,
        dtype=None,
        config: AnalogConfig | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_analog(config, seed)

    @classmethod
    def from_linear(
        cls, layer: nn.Linear, config: AnalogConfig | None = None, seed: int | None = None
    ) -> AnalogLinear:
        new = cls(
            layer.in_features, layer.out_features, layer.bias is not None, config=config, seed=seed
        )
        with torch.no_grad():
            new.weight.copy_(layer.weight)
            if layer.bias is not None:
                new.bias.copy_(layer.bias)
        return new.program()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._ensure_programmed()
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"AnalogLinear expects inputs with last dimension {self.in_features}, "
                f"got shape {tuple(x.shape)}"
            )
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).to(self.tile.w_mean.dtype)
        if self.config.converter.dac_bits is not None:
            x2 = self.tile.dac(x2)
        if self._analog_bias():  # the bias row is driven at a constant 1, not through the DAC
            x2 = torch.cat([x2, x2.new_ones(x2.shape[0], 1)], dim=1)
        y = self.tile.read(x2, self.generator, bias=self._digital_bias(), apply_dac=False)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", device={self.config.device.name}"
