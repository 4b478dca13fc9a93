"""``AnalogRNN``, ``AnalogLSTM``, ``AnalogGRU``: torch's recurrent layers on crossbars.

Same signatures, parameters and ``state_dict`` keys as :class:`torch.nn.RNN`, ``LSTM`` and
``GRU`` (``num_layers``, ``bidirectional``, ``batch_first``, ``dropout``, ``bias``,
``nonlinearity``, LSTM's ``proj_size``). Each layer and direction programs its input matrix
``W_ih`` (with ``b_ih``), its recurrent matrix ``W_hh`` (with ``b_hh``) and, for a projected
LSTM, ``W_hr`` (:class:`OwnedMatrix`). Every time step is a fresh read. With
``crossbar.recurrent = "split"`` (the default) ``W_ih`` and ``W_hh`` sit on arrays of their
own: the input matrix is read for all steps at once (each step of each sequence is its own
read, with its own noise, DAC and ADC), the recurrent matrix once per step on the previous
hidden state. With ``"joint"`` they are the rows of one array set, ``[W_ih | W_hh]`` (biases
summed), read once per step with ``[x_t; h_{t-1}]``: the gate currents add in the columns, so
each gate column is read, noisy and digitised once per step (paper 000's Mosaics core). The
gate arithmetic (sigmoid, tanh, products) is digital.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from nvmsim.config import AnalogConfig
from nvmsim.crossbar.tile import AnalogTile, add_reads
from nvmsim.nn.base import AnalogMixin
from nvmsim.nn.owned import OwnedArrays, OwnedMatrix
from nvmsim.seeds import spawn_seeds


def joint_steps(
    read: Callable[[torch.Tensor], torch.Tensor],
    cell: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    xs: torch.Tensor,
    h: torch.Tensor,
    order: Iterable[int],
) -> list[torch.Tensor]:
    """The joint-array time loop: at step ``t`` (in ``order``) one ``read`` of the rows
    ``[x_t; h_{t-1}]`` (``xs`` is ``(T, B, in)``), then ``h_t = cell(read, h_{t-1})``;
    returns the states by step. Analog recurrent layers with ``crossbar.recurrent =
    "joint"`` and paper 000's Mosaics core (:class:`~nvmsim.nn.mosaics.MosaicsRNN`) both run
    it: a Mosaics RNN is a ReLU RNN on joint arrays with a readout after the last step."""
    out: list[torch.Tensor] = [xs.new_empty(0)] * xs.shape[0]
    for t in order:
        h = cell(read(torch.cat([xs[t], h], dim=1)), h)
        out[t] = h
    return out


def physical_tiles(layers: Iterable[nn.Module]) -> Iterator[AnalogTile]:
    """The arrays' tiles (every slice of a bit-sliced one) of the analog ``layers``."""
    for layer in layers:
        if isinstance(layer, AnalogMixin):
            yield from getattr(layer.tile, "slices", [layer.tile])


def uncalibrated(layers: Iterable[nn.Module]) -> bool:
    """Whether a converter range of an analog layer among ``layers`` is still "auto" and
    not calibrated."""
    for layer in layers:
        if not isinstance(layer, AnalogMixin):
            continue
        conv = layer.config.converter
        dac = conv.dac_bits is not None and conv.dac_range == "auto"
        if dac and layer.tile.dac_range is None and layer.fixed_dac_range() is None:
            return True  # (a learned input range is no range to calibrate)
        adc = conv.adc_bits is not None and conv.adc_range == "auto"
        if adc and any(t.adc_range is None for t in physical_tiles([layer])):
            return True
    return False


@torch.no_grad()
def calibrate_over_steps(
    owner: nn.Module, layers: list[nn.Module], run: Callable[[], object]
) -> None:
    """Calibrate the "auto" converter ranges of ``layers`` (read once per time step inside
    ``owner``) over every step of ``run()``, a pass over the first batch.

    A range calibrates on the first read; for a matrix read once per step that would be
    step 0 alone, whose state is usually zero (a recurrent matrix would get the fallback
    range 1, a joint array the range of the first input only). So the sequence is run once
    first, in eval mode, each read calibrating afresh, with read noise drawn from copies of
    the layers' generators (their streams are untouched); each range is then the largest that
    any step needed (per array, or per column), reads of all-zero inputs (which calibrate to
    the fallback range 1) left out."""
    layers = [m for m in layers if isinstance(m, AnalogMixin)]
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def collect(module: nn.Module, args: tuple, out) -> None:
        x = args[0]
        for t in physical_tiles([module]):
            best = seen.setdefault(id(t), {})
            if t.dac_range is not None and bool(x.abs().amax() > 0):
                r = t.dac_range
                best["dac_range"] = r if "dac_range" not in best else best["dac_range"].max(r)
            if t.adc_range is not None and t.adc_range.dim():
                r = t.adc_range.clone()  # (G, nb[, cols]); arrays fed only zeros: unknown
                for j, (lo, hi) in enumerate(t.partition()):
                    xs = x[:, lo : min(hi, t.kernel_rows)]
                    fed = xs.numel() > 0 and bool(xs.abs().amax() > 0)
                    if not (fed or (t.bias_row and hi > t.kernel_rows)):
                        r[:, j] = torch.nan
                old = best.get("adc_range")
                best["adc_range"] = r if old is None else torch.fmax(old, r)
            t.dac_range = t.adc_range = None

    streams = {}
    for m in layers:
        streams[m] = m.generator
        m.generator = torch.Generator(device=m.generator.device)
        m.generator.set_state(streams[m].get_state())
    hooks = [m.register_forward_hook(collect) for m in layers]
    training = owner.training
    try:
        owner.eval()
        run()
    finally:
        owner.train(training)
        for h in hooks:
            h.remove()
        for m, g in streams.items():
            m.generator = g
    for t in physical_tiles(layers):
        for name, r in seen.get(id(t), {}).items():
            setattr(t, name, torch.nan_to_num(r, nan=1.0))  # never fed: the fallback


class AnalogRecurrent(OwnedArrays):
    """Shared forward of the analog recurrent layers (a mixin over torch's ``RNNBase``); its
    matrices are ``arrays[<part>_l<layer>[_reverse]]`` with part ``ih``, ``hh`` or ``hr``."""

    mode: str
    num_layers: int
    bidirectional: bool
    batch_first: bool
    dropout: float
    bias: bool
    hidden_size: int
    proj_size: int
    input_size: int

    def _setup(self, config: AnalogConfig | None, seed: int | None) -> None:
        config = config or AnalogConfig()
        self.config = config
        self.seed = config.seed if seed is None else int(seed)
        self.joint = config.crossbar.recurrent == "joint"
        if self.joint and self.mode == "GRU":
            raise ValueError(
                "crossbar.recurrent = 'joint' needs gates that add their input and recurrent "
                "parts; a GRU's candidate gate scales its recurrent part by r first: use 'split'"
            )
        dirs = 2 if self.bidirectional else 1
        parts = ("joint",) if self.joint else ("ih", "hh")
        parts += ("hr",) if self.proj_size > 0 else ()
        seeds = iter(spawn_seeds(self.seed, self.num_layers * dirs * len(parts)))
        arrays = {}
        for layer in range(self.num_layers):
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                for part in parts:
                    own = ("ih", "hh") if part == "joint" else (part,)
                    weights = tuple(f"weight_{p}{sfx}" for p in own)
                    biases = tuple(f"bias_{p}{sfx}" for p in own if self.bias and p != "hr")
                    arrays[f"{part}{sfx}"] = OwnedMatrix(self, weights, biases, config, next(seeds))
        self.arrays = nn.ModuleDict(arrays)

    def _cell(self, gi: torch.Tensor, gh: torch.Tensor | None, h: torch.Tensor, c, hr):
        """One step's digital gate arithmetic from the input part ``gi`` and the recurrent
        part ``gh`` of the gates (``gh`` None: ``gi`` is their sum, a joint read): ``(h, c)``.
        Without gradients it works in place on the read's own output."""
        inplace = not torch.is_grad_enabled()
        if self.mode == "GRU":
            ir, iz, in_ = gi.chunk(3, 1)
            hr_, hz, hn = gh.chunk(3, 1)
            r, z = torch.sigmoid(ir + hr_), torch.sigmoid(iz + hz)
            n = torch.tanh(in_ + r * hn)
            return (1 - z) * n + z * h, c
        if gh is not None:
            s = gh.add_(gi) if inplace else gi + gh
        else:
            s = gi
        if self.mode == "LSTM":
            # The gates are column blocks of ``s``: torch's tanh and sigmoid run 2-3x faster
            # on contiguous memory (same values), and out-of-place outputs are contiguous.
            i, f, g, o = s.chunk(4, 1)
            i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
            g = g.contiguous()
            if inplace:
                c = torch.mul(f, c).add_(g.tanh_().mul_(i))
                h = torch.tanh(c).mul_(o)
            else:
                c = f * c + i * torch.tanh(g)
                h = o * torch.tanh(c)
            return (h if hr is None else hr(h)), c
        if inplace:
            return (s.tanh_() if self.mode == "RNN_TANH" else s.relu_()), c
        return (torch.tanh(s) if self.mode == "RNN_TANH" else torch.relu(s)), c

    def _adds_reads(self, ih: nn.Module, hh: nn.Module) -> bool:
        """Whether a step's two split reads are drawn as one (:func:`add_reads`): gates that
        add them as they are (not a GRU's, whose candidate scales the recurrent part first),
        reads that are their mean plus Gaussian noise, on the blocked stream (the serial one
        keeps its two draws per step)."""
        if self.mode == "GRU" or self.config.read_noise_stream != "blocked":
            return False
        for a in (ih, hh):
            a._ensure_programmed()
        return all(isinstance(a.tile, AnalogTile) and a.tile.sums_by_moments for a in (ih, hh))

    def _direction(self, x, h, c, sfx: str, reverse: bool):
        """Run one direction of one layer over ``x`` (T, B, in): outputs (T, B, H_out)."""
        t_len, b = x.shape[:2]
        hr = self.arrays[f"hr{sfx}"] if self.proj_size > 0 else None
        order = reversed(range(t_len)) if reverse else range(t_len)
        outs = [None] * t_len
        if self.joint:
            cell_state = [c]  # the LSTM cell state after the latest step

            def cell(s: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
                h_new, cell_state[0] = self._cell(s, None, h_prev, cell_state[0], hr)
                return h_new

            outs = joint_steps(self.arrays[f"joint{sfx}"], cell, x, h, order)
            return torch.stack(outs), outs[0 if reverse else -1], cell_state[0]
        ih, hh = self.arrays[f"ih{sfx}"], self.arrays[f"hh{sfx}"]
        if self._adds_reads(ih, hh):
            stream = self.config.read_noise_stream
            with ih.deferring() as var_i, hh.deferring() as var_h:
                gi = ih(x.reshape(t_len * b, -1)).view(t_len, b, -1)  # every step's input read
                vi = var_i.pop()
                vi = None if vi is None else vi.view(t_len, b, *vi.shape[1:])
                for t in order:
                    reads = [(gi[t], None if vi is None else vi[t]), (hh(h), var_h.pop())]
                    h, c = self._cell(add_reads(reads, hh.generator, stream), None, h, c, hr)
                    outs[t] = h
            return torch.stack(outs), h, c
        gi = ih(x.reshape(t_len * b, -1)).view(t_len, b, -1)
        for t in order:
            h, c = self._cell(gi[t], hh(h), h, c, hr)
            outs[t] = h
        return torch.stack(outs), h, c

    def forward(self, input, hx=None):  # noqa: A002 (torch's name)
        if isinstance(input, PackedSequence):
            raise TypeError(
                f"{type(self).__name__} does not take packed sequences; pass a padded tensor"
            )
        batched = input.dim() == 3
        if input.dim() not in (2, 3) or input.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__} expects (seq, batch, {self.input_size}) "
                f"(batch first if batch_first) or (seq, {self.input_size}), "
                f"got {tuple(input.shape)}"
            )
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        dirs = 2 if self.bidirectional else 1
        h_out = self.proj_size if self.proj_size > 0 else self.hidden_size
        h0, c0 = self._initial_state(hx, x, batched, dirs, h_out)
        arrays = list(self.arrays.values())
        if uncalibrated(arrays):
            calibrate_over_steps(self, arrays, lambda: self._run(x, h0, c0, True))
        return self._run(x, h0, c0, batched)

    def _run(self, x, h0, c0, batched: bool):
        """Every layer and direction over ``x`` (T, B, in): torch's ``(output, state)``."""
        dirs = 2 if self.bidirectional else 1
        hn, cn = [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                k = layer * dirs + d
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                c = None if c0 is None else c0[k]
                o, h, c = self._direction(x, h0[k], c, sfx, reverse=bool(d))
                outs.append(o)
                hn.append(h)
                cn.append(c)
            x = outs[0] if dirs == 1 else torch.cat(outs, dim=2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        out = x.transpose(0, 1) if self.batch_first else x
        h_n = torch.stack(hn)
        state = (h_n, torch.stack(cn)) if self.mode == "LSTM" else h_n
        if not batched:
            out = out.squeeze(1)
            state = (
                tuple(s.squeeze(1) for s in state)
                if isinstance(state, tuple)
                else (state.squeeze(1))
            )
        return out, state

    def _initial_state(self, hx, x, batched: bool, dirs: int, h_out: int):
        """``(h0, c0)`` as (layers * dirs, B, .) tensors; zeros when ``hx`` is ``None``."""
        n, b = self.num_layers * dirs, x.shape[1]
        kw = {"dtype": x.dtype, "device": x.device}
        if hx is None:
            h0 = torch.zeros(n, b, h_out, **kw)
            c0 = torch.zeros(n, b, self.hidden_size, **kw) if self.mode == "LSTM" else None
            return h0, c0
        if self.mode == "LSTM":
            if not (isinstance(hx, tuple) and len(hx) == 2):
                raise ValueError("AnalogLSTM expects hx = (h0, c0)")
            h0, c0 = hx
        else:
            h0, c0 = hx, None
        if not batched:
            h0 = h0.unsqueeze(1)
            c0 = None if c0 is None else c0.unsqueeze(1)
        if tuple(h0.shape) != (n, b, h_out):
            raise ValueError(f"h0 must have shape {(n, b, h_out)}, got {tuple(h0.shape)}")
        if c0 is not None and tuple(c0.shape) != (n, b, self.hidden_size):
            raise ValueError(
                f"c0 must have shape {(n, b, self.hidden_size)}, got {tuple(c0.shape)}"
            )
        return h0, c0

    @classmethod
    def from_torch(cls, layer, config: AnalogConfig | None = None, seed: int | None = None):
        """Analog copy of a torch recurrent layer (same arguments, weights, device, dtype)."""
        p = next(layer.parameters())
        kw = {
            "num_layers": layer.num_layers, "bias": layer.bias, "batch_first": layer.batch_first,
            "dropout": layer.dropout, "bidirectional": layer.bidirectional,
        }  # fmt: skip
        if isinstance(layer, nn.RNN):
            kw["nonlinearity"] = layer.nonlinearity
        if isinstance(layer, nn.LSTM):
            kw["proj_size"] = layer.proj_size
        new = cls(layer.input_size, layer.hidden_size, **kw, device=p.device, dtype=p.dtype,
                  config=config, seed=seed)  # fmt: skip
        new.load_state_dict(layer.state_dict())
        new.train(layer.training)
        return new.program()


class AnalogRNN(AnalogRecurrent, nn.RNN):
    """:class:`torch.nn.RNN` (tanh or relu) on crossbars; ``config`` and ``seed`` added."""

    def __init__(self, *args, config: AnalogConfig | None = None, seed: int | None = None,
                 **kwargs) -> None:  # fmt: skip
        nn.RNN.__init__(self, *args, **kwargs)
        self._setup(config, seed)


class AnalogLSTM(AnalogRecurrent, nn.LSTM):
    """:class:`torch.nn.LSTM` (``proj_size`` too) on crossbars; ``config`` and ``seed`` added."""

    def __init__(self, *args, config: AnalogConfig | None = None, seed: int | None = None,
                 **kwargs) -> None:  # fmt: skip
        nn.LSTM.__init__(self, *args, **kwargs)
        self._setup(config, seed)


class AnalogGRU(AnalogRecurrent, nn.GRU):
    """:class:`torch.nn.GRU` on crossbars; ``config`` and ``seed`` added."""

    def __init__(self, *args, config: AnalogConfig | None = None, seed: int | None = None,
                 **kwargs) -> None:  # fmt: skip
        nn.GRU.__init__(self, *args, **kwargs)
        self._setup(config, seed)
