"""State shared by analog layers: config, tile, seeds, and when to (re)program."""

from __future__ import annotations

import torch

from nvmsim.config import AnalogConfig
from nvmsim.crossbar.tile import AnalogTile


class AnalogMixin:
    """Holds an :class:`AnalogTile`; programs it from ``self.weight`` when needed.

    The programming draw comes from a generator seeded with ``seed`` (so ``program()`` is
    reproducible); read noise comes from ``self.generator``, seeded with ``seed + 1``.
    Changing the weights in place (an optimiser step, ``load_state_dict``) reprograms the
    tile before the next forward pass.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None

    def _init_analog(self, config: AnalogConfig | None, seed: int | None) -> None:
        self.config = config or AnalogConfig()
        self.seed = self.config.seed if seed is None else int(seed)
        self.tile = AnalogTile(self.config)
        self.generator = torch.Generator().manual_seed(self.seed + 1)
        self._programmed_version: tuple[int, int] | None = None

    def _analog_bias(self) -> bool:
        return self.bias is not None and self.config.crossbar.bias == "analog"

    def _matrix(self) -> torch.Tensor:
        """The (out, in) matrix that goes onto the crossbar (bias as a last column if analog)."""
        w = self.weight.detach().reshape(self.weight.shape[0], -1)
        if self._analog_bias():
            w = torch.cat([w, self.bias.detach().unsqueeze(1)], dim=1)
        return w

    def _version(self) -> tuple[int, int]:
        b = self.bias._version if self.bias is not None else 0
        return (self.weight._version, b)

    def program(self, generator: torch.Generator | None = None):
        """Draw programming error, quantisation and faults once; returns ``self``."""
        if generator is None:
            generator = torch.Generator().manual_seed(self.seed)
        w = self._matrix()
        if not torch.isfinite(w).all():
            raise ValueError(f"{type(self).__name__}: weights contain NaN or inf")
        self.tile.program(w, generator)
        self._programmed_version = self._version()
        return self

    def drift_to(self, t_seconds: float):
        """Conductance drift to ``t_seconds`` after programming; returns ``self``."""
        self._ensure_programmed()
        self.tile.drift_to(t_seconds)
        return self

    def reseed(self, seed: int) -> None:
        """Restart the read-noise stream (programming is unchanged)."""
        self.generator.manual_seed(int(seed))

    def _ensure_programmed(self) -> None:
        if self._programmed_version != self._version() or not self.tile.programmed:
            self.program()

    def _digital_bias(self) -> torch.Tensor | None:
        return None if self.bias is None or self._analog_bias() else self.bias.detach()
