"""``MosaicsRNN``: paper 000's time-multiplexed RNN on one crossbar core.

The input is read in ``t`` chunks of ``M / t`` values. One core ``[x_chunk, h_prev]`` ->
``D = width - M/t`` with ReLU runs at every step, as one array of ``width`` rows (the paper's
400-row Mosaics core); the readout ``D -> classes`` runs after the last step. Both are plain
``nn.Linear`` modules, so :func:`nvmsim.convert` puts them on crossbars and the core is read,
with fresh noise, at every step. A Keras ``SimpleRNN(D, activation="relu")`` followed by a
``Dense`` is this network (its kernel and recurrent kernel stacked are the core's rows).

The time loop is the engine's joint-array loop (:func:`~nvmsim.nn.recurrent.joint_steps`):
the core is an ``AnalogRNN`` with ``nonlinearity="relu"`` on joint ``[W_ih | W_hh]`` arrays
(``crossbar.recurrent = "joint"``), its ``W_ih`` the core's first ``M/t`` columns, ``W_hh``
the rest. The core stays one ``nn.Linear`` with the paper's activation module (bounded, or
with neuron noise in training) so that paper 000's checkpoints, Keras files, seeds and energy
counts are the paper's; ``tests/nn/test_mosaics.py`` checks that a converted Mosaics RNN and
that ``AnalogRNN`` programmed with the same seed read bit-identically under noise.
"""

from __future__ import annotations

import torch
from torch import nn

from nvmsim.nn.activations import paper_relu
from nvmsim.nn.recurrent import calibrate_over_steps, joint_steps, uncalibrated


class MosaicsRNN(nn.Module):
    """Paper 000's Mosaics RNN; ``bounded`` uses the CNN's bounded ReLU ``min(max(0, x), 1)``
    in the core, which keeps the hidden state in [0, 1] at every step."""

    def __init__(
        self,
        t: int = 7,
        inputs: int = 784,
        width: int = 400,
        sigma_neu: float = 0.0,
        bounded: bool = False,
        classes: int = 10,
    ):
        super().__init__()
        if t < 1 or inputs % t:
            raise ValueError(f"t must be a positive divisor of {inputs}, got {t}")
        if classes < 1:
            raise ValueError(f"classes must be >= 1, got {classes}")
        self.t, self.chunk = t, inputs // t
        self.hidden = width - self.chunk
        if self.hidden < 1:
            raise ValueError(f"chunk {self.chunk} leaves no hidden units in width {width}")
        self.core = nn.Linear(width, self.hidden)
        self.act = paper_relu(sigma_neu, bounded)
        self.readout = nn.Linear(self.hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = x.reshape(x.shape[0], self.t, self.chunk).transpose(0, 1)  # (t, B, M/t)
        h = x.new_zeros(x.shape[0], self.hidden)

        def steps() -> list[torch.Tensor]:
            return joint_steps(self.core, lambda s, _: self.act(s), xs, h, range(self.t))

        if uncalibrated([self.core]):  # an analog core's converters: over every step
            calibrate_over_steps(self, [self.core], steps)
        return self.readout(steps()[-1])
