"""``OwnedMatrix``: one crossbar matrix whose weights are parameters of another module.

A recurrent layer keeps torch's parameters (``weight_ih_l0``, ``bias_hh_l0``, ...) and
``state_dict`` keys, but programs several matrices (per layer, direction and part). Each is an
``OwnedMatrix``: an analog layer (:class:`AnalogMixin`: tile, seeds, read-noise generator,
reprogramming when the weights change) that reads its weight and bias from its owner's
parameters by name, so nothing is stored twice and every helper that walks analog layers
(``program``, ``drift_to``, chip files, ``summary``) sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.crossbar.products import Product
from nvmsim.nn.base import AnalogMixin


class OwnedMatrix(AnalogMixin, nn.Module):
    """The dense matrix ``owner.<weight>`` (out, in) plus ``sum(owner.<bias>)`` on a crossbar;
    ``weight`` may name several matrices, placed side by side as the rows of one array set
    (a recurrent layer's ``[W_ih | W_hh]``, read with ``[x_t; h_{t-1}]``).

    The owner is held outside the module tree (no cycle in ``modules()``; ``deepcopy`` maps it
    to the copy's owner). The owner must call :meth:`follow_owner` after it moves or casts its
    parameters (torch moves children before a module's own parameters).
    """

    def __init__(
        self,
        owner: nn.Module,
        weight: str | tuple[str, ...],
        biases: tuple[str, ...] = (),
        config: AnalogConfig | None = None,
        seed: int | None = None,
        rows: tuple[int, int] | None = None,
        bias_rows: tuple[int, int] | None = None,
    ) -> None:
        nn.Module.__init__(self)
        self.__dict__["_owner"] = owner
        self.weight_names = (weight,) if isinstance(weight, str) else tuple(weight)
        self.bias_names = tuple(biases)
        # slices [start, stop) of the owner's output rows (None: all of them)
        self.out_rows, self.bias_rows = rows, bias_rows if bias_rows is not None else rows
        self._init_analog(config, seed, Product())
        self._deferred: list[torch.Tensor | None] | None = None

    def _param(self, name: str, rows: tuple[int, int] | None) -> torch.Tensor:
        p = self._owner.get_parameter(name)
        return p if rows is None else p[rows[0] : rows[1]]

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        ws = [self._param(n, self.out_rows) for n in self.weight_names]
        return ws[0] if len(ws) == 1 else torch.cat(ws, dim=1)

    @property
    def bias(self) -> torch.Tensor | None:  # type: ignore[override]
        bs = [self._param(n, self.bias_rows) for n in self.bias_names]
        return None if not bs else bs[0] if len(bs) == 1 else sum(bs[1:], bs[0])

    def _version(self) -> tuple[int, ...]:
        names = (*self.weight_names, *self.bias_names)
        return tuple(self._owner.get_parameter(n)._version for n in names)

    def follow_owner(self, was_current: bool) -> None:
        """After the owner moved or cast its parameters: the generator follows their device,
        and a chip that was current stays programmed."""
        if self.generator.device != self.weight.device:
            self.generator = torch.Generator(device=self.weight.device).manual_seed(self.seed + 1)
        if was_current:
            self._programmed_version = self._version()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One read of every row of ``x`` (``(N, in)``): ``(N, out)``, fresh noise per row.
        Inside :meth:`deferring`, the expected read, its variance kept for the owner."""
        self._ensure_programmed()
        if self._deferred is None:
            return self._read(x)
        mean, var = self.read_moments(x)
        self._deferred.append(var)
        return mean

    @contextmanager
    def deferring(self) -> Iterator[list[torch.Tensor | None]]:
        """Reads whose noise the owner draws: each call returns the expected read (through
        ``__call__``, so hooks see every read) and appends its variance to the list
        yielded, for :func:`~nvmsim.crossbar.tile.add_reads` with another array's read."""
        self._deferred = []
        try:
            yield self._deferred
        finally:
            self._deferred = None

    def extra_repr(self) -> str:
        w = self.weight
        bias = "+".join(self.bias_names) or "none"
        names = "|".join(self.weight_names)
        return f"{names} {tuple(w.shape)}, bias={bias}, device={self.config.device.name}"


class OwnedArrays:
    """Mixin of a torch module whose matrices are :class:`OwnedMatrix` ``arrays`` (a
    ``ModuleDict``): programming, moves and casts for all of them."""

    arrays: nn.ModuleDict
    config: AnalogConfig

    def program(self, generator: torch.Generator | None = None):
        """Program every matrix (a new device instance with ``generator``); returns ``self``."""
        for a in self.arrays.values():
            a.program(generator)
        return self

    def _apply(self, fn, recurse: bool = True):
        current = [a.is_current() for a in self.arrays.values()]
        super()._apply(fn, recurse)  # type: ignore[misc]
        for a, was in zip(self.arrays.values(), current, strict=True):
            a.follow_owner(was)
        return self

    def extra_repr(self) -> str:
        return super().extra_repr() + f", device={self.config.device.name}"  # type: ignore[misc]
