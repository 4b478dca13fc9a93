"""``convert()``: an analog copy of any module tree, by a conversion map; helpers that act on
all analog layers.

The map sends torch layer types to analog ones (``Linear``, ``Conv1d/2d/3d``, ``RNN``,
``LSTM``, ``GRU``, Keras's reset-before :class:`ResetBeforeGRU`, ``MultiheadAttention`` by
default; :func:`register` adds more). Lookup
follows the module's class hierarchy, so subclasses of a mapped type convert too. Modules that
read their children's weights functionally are never descended into: ``nn.MultiheadAttention``
converts whole (its projections become its own arrays; ``out_proj`` stays a plain holder of
the parameters). ``nn.TransformerEncoderLayer``, whose inference fast path reads its children's
weights, has its children converted and becomes an
:class:`~nvmsim.nn.transformer.AnalogTransformerEncoderLayer`, whose forward calls them.
Every module with parameters that stays digital is reported
(``on_unconverted``), except normalisation layers, which are digital periphery by design.
"""

from __future__ import annotations

import copy
import fnmatch
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

import torch
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.crossbar.tile import NonFiniteError, all_finite
from nvmsim.nn.attention import AnalogMultiheadAttention
from nvmsim.nn.base import AnalogMixin
from nvmsim.nn.conv import AnalogConv1d, AnalogConv2d, AnalogConv3d
from nvmsim.nn.input_range import apply_ranges, learned_ranges
from nvmsim.nn.linear import AnalogLinear
from nvmsim.nn.recurrent import AnalogGRU, AnalogLSTM, AnalogRNN
from nvmsim.nn.reset_gru import AnalogResetBeforeGRU, ResetBeforeGRU
from nvmsim.nn.transformer import AnalogTransformerEncoderLayer, without_nested_tensors
from nvmsim.seeds import spawn_seeds

CONVERSION_MAP: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: AnalogLinear,
    nn.Conv1d: AnalogConv1d,
    nn.Conv2d: AnalogConv2d,
    nn.Conv3d: AnalogConv3d,
    nn.RNN: AnalogRNN,
    nn.LSTM: AnalogLSTM,
    nn.GRU: AnalogGRU,
    nn.MultiheadAttention: AnalogMultiheadAttention,
    ResetBeforeGRU: AnalogResetBeforeGRU,
}

#: Modules whose forward reads their children's parameters directly: never descended into
#: (converted whole where the map has them: attention's projections become its own arrays).
FUNCTIONAL_OWNERS: list[type[nn.Module]] = [nn.MultiheadAttention]

#: Modules with a fast path that bypasses their children or hands them nested tensors: their
#: children convert, and the module is adopted (given a forward that calls them).
FAST_PATH_OWNERS: dict[type[nn.Module], Callable[[nn.Module], nn.Module]] = {
    nn.TransformerEncoderLayer: AnalogTransformerEncoderLayer.adopt,
    nn.TransformerEncoder: without_nested_tensors,
}

#: Digital periphery by design: never reported as unconverted.
DIGITAL_BY_DESIGN: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm,
    nn.LocalResponseNorm,
)  # fmt: skip

OnUnconverted = Literal["warn", "error", "ignore"]


class UnconvertedError(ValueError):
    """A module with parameters stays digital and ``on_unconverted="error"`` was asked."""


def register(torch_type: type[nn.Module], analog_type: type[nn.Module]) -> None:
    """Convert ``torch_type`` (and its subclasses) into ``analog_type`` from now on.

    ``analog_type`` must be a module class with ``from_torch(module, config, seed)``.
    """
    if not (isinstance(torch_type, type) and issubclass(torch_type, nn.Module)):
        raise TypeError(f"torch_type must be an nn.Module class, got {torch_type!r}")
    if not (
        isinstance(analog_type, type)
        and issubclass(analog_type, nn.Module)
        and callable(getattr(analog_type, "from_torch", None))
    ):
        raise TypeError(f"analog_type must be an analog layer class, got {analog_type!r}")
    CONVERSION_MAP[torch_type] = analog_type


def _analog_type(m: nn.Module) -> type[nn.Module] | None:
    for cls in type(m).__mro__:
        if cls in CONVERSION_MAP:
            return CONVERSION_MAP[cls]
    return None


def _excluded(name: str, m: nn.Module, exclude: Iterable[str | type]) -> bool:
    for e in exclude:
        if isinstance(e, str):
            if name == e or fnmatch.fnmatchcase(name, e) or name.startswith(e + "."):
                return True
        elif isinstance(m, e):
            return True
    return False


def _plan(model: nn.Module, exclude: tuple) -> tuple[list, list[str], list]:
    """(modules to convert, names of modules with parameters that stay digital, fast-path
    owners to re-class once their children are converted)."""
    targets, digital, owners = [], [], []

    def visit(name: str, m: nn.Module) -> None:
        if isinstance(m, (AnalogMixin, *CONVERSION_MAP.values())):
            return
        if _excluded(name, m, exclude):
            return
        kind = _analog_type(m)
        if kind is not None:
            targets.append((name, m, kind))
            return
        if isinstance(m, tuple(FUNCTIONAL_OWNERS)):
            if any(True for _ in m.parameters()):
                digital.append(name or type(m).__name__)
            return
        owner = next((v for k, v in FAST_PATH_OWNERS.items() if type(m) is k), None)
        if owner is not None:
            owners.append((m, owner))
        if any(True for _ in m.parameters(recurse=False)) and not isinstance(m, DIGITAL_BY_DESIGN):
            digital.append(name or type(m).__name__)
        for child_name, child in m.named_children():
            visit(f"{name}.{child_name}" if name else child_name, child)

    visit("", model)
    return targets, digital, owners


def _require_finite_state(model: nn.Module) -> None:
    """Refuse NaN or inf in any parameter or normalisation statistic, and NaN in any buffer
    (other buffers may hold -inf masks), naming the tensor."""
    for prefix, m in model.named_modules():
        norm = isinstance(m, DIGITAL_BY_DESIGN)
        tensors = [(n, t, True) for n, t in m.named_parameters(recurse=False)]
        tensors += [(n, t, norm) for n, t in m.named_buffers(recurse=False)]
        for n, t, strict in tensors:
            if not (t.is_floating_point() or t.is_complex()):
                continue
            if not all_finite(t) and (strict or bool(torch.isnan(t).any())):
                kind = "parameter" if isinstance(t, nn.Parameter) else "buffer"
                what = "NaN or inf" if strict else "NaN"
                layer = prefix or type(m).__name__
                raise NonFiniteError(
                    f"layer {layer!r}: {kind} {n!r} contains {what}; cannot convert"
                )


def convert(
    model: nn.Module,
    config: AnalogConfig | None = None,
    *,
    exclude: Iterable[str | type[nn.Module]] = (),
    on_unconverted: OnUnconverted = "warn",
) -> nn.Module:
    """Analog copy of ``model``: every module in the conversion map becomes an analog layer.

    The original is untouched. Layers are programmed at once, each with its own seed derived
    from ``config.seed``, so the same config gives the same device instance every time.
    ``exclude`` keeps modules (and their subtrees) digital by name (exact, prefix or glob) or
    type. Modules with parameters that stay digital otherwise are named in a warning
    (``on_unconverted="warn"``), an :class:`UnconvertedError` (``"error"``) or not at all.
    Non-finite parameters or buffers, and programmed state that overflows, raise
    :class:`~nvmsim.crossbar.tile.NonFiniteError` naming the tensor or layer.
    """
    if on_unconverted not in ("warn", "error", "ignore"):
        raise ValueError(
            f"on_unconverted must be 'warn', 'error' or 'ignore', got {on_unconverted!r}"
        )
    config = config or AnalogConfig()
    exclude = tuple(exclude)
    _require_finite_state(model)
    new = copy.deepcopy(model)
    targets, digital, owners = _plan(new, exclude)
    for m, adopt in owners:
        adopt(m)
    if digital and on_unconverted != "ignore":
        msg = f"{len(digital)} module(s) with parameters stay digital: {', '.join(digital)}"
        if on_unconverted == "error":
            raise UnconvertedError(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)
    seeds = spawn_seeds(config.seed, len(targets))
    for (name, m, kind), seed in zip(targets, seeds, strict=True):
        label = name or type(m).__name__
        try:
            analog = kind.from_torch(m, config, seed)
        except ValueError as err:
            cls = NonFiniteError if isinstance(err, NonFiniteError) else ValueError
            raise cls(f"layer {label!r}: {err}") from None
        for sub, layer in analog.named_modules():
            if isinstance(layer, AnalogMixin):
                layer.tile.name = f"{label}.{sub}" if sub else label
        if name == "":
            new = analog
            break
        parent_name, _, child = name.rpartition(".")
        parent = new.get_submodule(parent_name) if parent_name else new
        setattr(parent, child, analog)
    apply_ranges(new, learned_ranges(model))
    return new


def analog_layers(model: nn.Module) -> Iterator[AnalogMixin]:
    """Every analog layer in ``model``, in module order."""
    return (m for m in model.modules() if isinstance(m, AnalogMixin))


def program(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """(Re)program every analog layer; with ``generator``, draw a new device instance."""
    for layer in analog_layers(model):
        layer.program(generator)
    return model


def drift_to(model: nn.Module, t_seconds: float) -> nn.Module:
    """Let every analog layer drift to ``t_seconds`` after programming."""
    for layer in analog_layers(model):
        layer.drift_to(t_seconds)
    return model
