"""``ResetBeforeGRU``: the GRU whose reset gate acts before the recurrent product, and its
analog form.

Cho et al. (2014)'s original GRU and Keras's ``GRU(reset_after=False)``:
``n = tanh(W_in x + b_in + W_hn (r * h))``, where torch's ``nn.GRU`` (Keras's default
``reset_after=True``) computes ``r * (W_hn h + b_hn)``. Parameters are in torch's gate order
(r, z, n): ``weight_ih`` (3H, in), ``weight_hh`` (3H, H), one ``bias`` (3H). One layer, one
direction; inputs ``(N, T, in)`` with ``batch_first`` (the default), else ``(T, N, in)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.nn.owned import OwnedArrays, OwnedMatrix
from nvmsim.seeds import spawn_seeds


class ResetBeforeGRU(nn.Module):
    """GRU with the reset gate applied to ``h`` before ``W_hn``; returns ``(output, h_n)``
    as ``nn.GRU`` does (``h_n`` of shape (1, N, H))."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        batch_first: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"sizes must be >= 1, got {input_size} and {hidden_size}")
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size = input_size, hidden_size
        self.batch_first = batch_first
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size, **kw))
        self.bias = nn.Parameter(torch.empty(3 * hidden_size, **kw)) if bias else None
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():  # torch's GRU initialisation
            nn.init.uniform_(p, -bound, bound)

    def _matrices(self):
        """The input product (with the bias), the (r, z) and the n recurrent products."""
        h = self.hidden_size
        return (
            lambda x: F.linear(x, self.weight_ih, self.bias),
            lambda s: F.linear(s, self.weight_hh[: 2 * h]),
            lambda s: F.linear(s, self.weight_hh[2 * h :]),
        )

    def forward(self, x: torch.Tensor, hx: torch.Tensor | None = None):
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__} expects (batch, seq, {self.input_size}) "
                f"(seq first unless batch_first), got {tuple(x.shape)}"
            )
        if not self.batch_first:
            x = x.transpose(0, 1)
        b, t_len, hs = x.shape[0], x.shape[1], self.hidden_size
        ih, hh_rz, hh_n = self._matrices()
        gi = ih(x.reshape(b * t_len, -1)).view(b, t_len, 3 * hs)
        h = x.new_zeros(b, hs) if hx is None else hx.reshape(b, hs)
        outs = []
        for t in range(t_len):
            ir, iz, in_ = gi[:, t].chunk(3, 1)
            hr, hz = hh_rz(h).chunk(2, 1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            n = torch.tanh(in_ + hh_n(r * h))
            h = (1 - z) * n + z * h
            outs.append(h)
        y = torch.stack(outs, dim=1 if self.batch_first else 0)
        return y, h.unsqueeze(0)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias is not None}"


class AnalogResetBeforeGRU(OwnedArrays, ResetBeforeGRU):
    """:class:`ResetBeforeGRU` on crossbars: arrays ``ih`` (with the bias), ``hh_rz`` and
    ``hh_n`` (the rows of ``weight_hh`` for the gates and for the candidate), every time step
    a fresh read."""

    def __init__(self, *args, config: AnalogConfig | None = None, seed: int | None = None,
                 **kwargs) -> None:  # fmt: skip
        ResetBeforeGRU.__init__(self, *args, **kwargs)
        self.config = config or AnalogConfig()
        self.seed = self.config.seed if seed is None else int(seed)
        s_ih, s_rz, s_n = spawn_seeds(self.seed, 3)
        h, cfg = self.hidden_size, self.config
        biases = ("bias",) if self.bias is not None else ()
        self.arrays = nn.ModuleDict({
            "ih": OwnedMatrix(self, "weight_ih", biases, cfg, s_ih),
            "hh_rz": OwnedMatrix(self, "weight_hh", (), cfg, s_rz, rows=(0, 2 * h)),
            "hh_n": OwnedMatrix(self, "weight_hh", (), cfg, s_n, rows=(2 * h, 3 * h)),
        })  # fmt: skip

    def _matrices(self):
        return self.arrays["ih"], self.arrays["hh_rz"], self.arrays["hh_n"]

    @classmethod
    def from_torch(cls, layer: ResetBeforeGRU, config: AnalogConfig | None = None,
                   seed: int | None = None) -> AnalogResetBeforeGRU:  # fmt: skip
        """Analog copy of a :class:`ResetBeforeGRU` (same weights, device, dtype)."""
        p = layer.weight_ih
        new = cls(layer.input_size, layer.hidden_size, layer.bias is not None,
                  layer.batch_first, device=p.device, dtype=p.dtype, config=config,
                  seed=seed)  # fmt: skip
        new.load_state_dict(layer.state_dict())
        new.train(layer.training)
        return new.program()
