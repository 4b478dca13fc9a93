"""``AnalogLinear``: ``nn.Linear`` computed on a programmed crossbar."""

from __future__ import annotations

import torch
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.crossbar.products import Product
from nvmsim.nn.base import AnalogMixin


class AnalogLinear(AnalogMixin, nn.Linear):
    """Same signature and ``state_dict`` keys as :class:`torch.nn.Linear`, plus ``config``.

    Gradients flow to the input through the analog read and to the weight and bias
    straight-through (as the digital product's); an optimiser step changes the weights, so
    the next forward reprograms the tile (same programming draws, from ``seed``).
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
        self._init_analog(config, seed, Product())

    @staticmethod
    def _torch_args(layer: nn.Linear) -> tuple:
        return (layer.in_features, layer.out_features, layer.bias is not None)

    @classmethod
    def from_linear(
        cls, layer: nn.Linear, config: AnalogConfig | None = None, seed: int | None = None
    ) -> AnalogLinear:
        return cls.from_torch(layer, config, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._ensure_programmed()
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"AnalogLinear expects inputs with last dimension {self.in_features}, "
                f"got shape {tuple(x.shape)}"
            )
        lead = x.shape[:-1]
        y = self._read(x.reshape(-1, self.in_features))
        return y.reshape(*lead, self.out_features)
