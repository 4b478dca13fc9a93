"""Checkpoints: one safetensors file holding the weights and, in its metadata, how to rebuild.

File format (one file, so one atomic ``os.replace`` publishes it whole):

* the tensors are the model's ``state_dict`` (safetensors: no pickle, nothing executable);
* the safetensors header metadata (string -> string) holds
  ``format = "nvmsim-checkpoint"``, ``format_version = "1"``, ``sha256`` (a digest of every
  tensor's name, dtype, shape and bytes, so corruption of the data is detected) and ``info``,
  a JSON object::

      {"arch": {"name": "mlp128", "kwargs": {...}},   # how to rebuild the model
       "training": {...} | null, "metrics": ... | null,
       "input_ranges": {"fc1": 2.5, ...},              # only if it learned DAC ranges
       "nvmsim_version": "0.1.0", "torch_version": "2.13.0", "created": "2025-...Z"}

  The header is plain JSON at the start of the file (after an 8-byte length), so
  ``read_checkpoint_info(path)`` reads it without loading the tensors.

``load_checkpoint`` checks the tensor names and shapes of the header against the model built on
the meta device before any tensor data is read or the model is allocated, then the checksum,
then that every tensor is finite; any bad file is a one-line :class:`CheckpointError`.

``save_checkpoint`` writes with :func:`nvmsim.files.atomic_write` (a temporary file in the
same folder, fsynced and renamed over ``path``); a crash leaves either the old checkpoint or
the new one, never half of one, and the temporary file is removed on any error.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as _st_save
from torch import nn

from nvmsim.files import atomic_write
from nvmsim.nn.input_range import attach_ranges, checked_ranges, learned_ranges

__all__ = ["CheckpointError", "load_checkpoint", "read_checkpoint_info", "save_checkpoint"]

FORMAT = "nvmsim-checkpoint"
FORMAT_VERSION = "1"
#: Most bytes of JSON an ``arch`` may have for ``load_checkpoint`` to build it (real ones have
#: tens): building takes time and memory in the size of the kwargs (``mlp(sizes=[...])``).
MAX_ARCH_BYTES = 4096


class CheckpointError(ValueError):
    """A checkpoint that cannot be written, read, or loaded into its model."""


def _jsonable(value: Any, what: str) -> Any:
    """``value`` as plain JSON data (pydantic models are dumped); a clear error otherwise."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{what} is not JSON-serialisable: {e}") from e


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"state_dict entry {name!r} is a {type(value).__name__}, not a tensor; "
                "safetensors checkpoints hold tensors only"
            )
        # clone: safetensors refuses tensors that share memory (tied or viewed weights)
        out[name] = value.detach().to("cpu").contiguous().clone()
    return out


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    arch: Mapping[str, Any],
    training: Mapping[str, Any] | Any | None = None,
    metrics: Any = None,
) -> Path:
    """Write ``model``'s weights and how to rebuild it to ``path``, atomically.

    ``arch`` is ``{"name": <nvmsim.models name>, "kwargs": {...}}`` (``kwargs`` optional; other
    keys are kept). ``training`` and ``metrics`` are any JSON-serialisable data (pydantic
    models are dumped). Returns the path written.
    """
    path = Path(path)
    if not isinstance(arch, Mapping) or not isinstance(arch.get("name"), str):
        raise CheckpointError(f"{path}: arch must be a dict with a string 'name', got {arch!r}")
    if not isinstance(arch.get("kwargs", {}), Mapping):
        raise CheckpointError(f"{path}: arch['kwargs'] must be a dict, got {arch['kwargs']!r}")
    from nvmsim import __version__

    info = {
        "arch": _jsonable(dict(arch), f"{path}: arch"),
        "training": _jsonable(training, f"{path}: training"),
        "metrics": _jsonable(metrics, f"{path}: metrics"),
        "nvmsim_version": __version__,
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    ranges = learned_ranges(model)
    if ranges:  # DAC ranges learned in hardware-aware training
        info["input_ranges"] = ranges
    try:
        tensors = _state_tensors(model)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    bad = value_problem(tensors, tensors)
    if bad:  # a file nobody could load again: refuse to write it
        raise CheckpointError(f"{path}: not saved: {bad} (did training diverge?)")
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sha256": _digest(tensors),
        "info": json.dumps(info),
    }
    return atomic_write(path, _st_save(tensors, metadata=metadata))


def one_line(error: BaseException) -> str:
    """``error``'s message on one line (torch and h5py messages can span several)."""
    return " ".join(str(error).split()) or type(error).__name__


@contextmanager
def errors_as(error: type[Exception], path: object) -> Iterator[None]:
    """Last line of defence of a reader: any other exception in the block becomes a one-line
    ``error`` naming ``path`` (the readers' specific checks come first)."""
    try:
        yield
    except error:
        raise
    except Exception as e:
        raise error(f"{path}: cannot read the file: {type(e).__name__}: {one_line(e)}") from None


@contextmanager
def _safe_open(path: Path, kind: str, error: type[Exception]) -> Iterator[Any]:
    """``path`` open for reading with safetensors; an unreadable file raises ``error``."""
    try:
        with safe_open(str(path), framework="pt") as f:
            yield f
    except error:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise error(
            f"{path}: not a readable {kind} (truncated or corrupted?): {one_line(e)}"
        ) from None


def _checked_meta(path: Path, f: Any, fmt: str, version: str, kind: str, error: type) -> dict:
    """The metadata of the open file ``f``, which must be tagged ``format = fmt``."""
    meta = f.metadata() or {}
    if meta.get("format") != fmt:
        raise error(f"{path}: not an nvmsim {kind} (no {fmt!r} metadata)")
    if meta.get("format_version") != version:
        raise error(
            f"{path}: {kind} format version {meta.get('format_version')!r} is not "
            f"supported (this nvmsim reads version {version})"
        )
    return meta


def read_safetensors(
    path: Path, fmt: str, version: str, kind: str, error: type[Exception], with_tensors: bool
) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a safetensors file tagged ``format = fmt`` at ``version``;
    anything else raises ``error`` naming the file and calling it a ``kind``."""
    with _safe_open(path, kind, error) as f:
        meta = _checked_meta(path, f, fmt, version, kind, error)
        tensors = {k: f.get_tensor(k) for k in f.keys()} if with_tensors else {}
    return tensors, meta


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    return path


def _read(path: Path) -> tuple[dict, dict, dict[str, tuple[int, ...]]]:
    """Metadata, ``info`` and the tensors' shapes, from the header only (no tensor data)."""
    with _safe_open(path, "checkpoint", CheckpointError) as f:
        meta = _checked_meta(path, f, FORMAT, FORMAT_VERSION, "checkpoint", CheckpointError)
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    try:
        info = json.loads(meta["info"])
        if not isinstance(info, dict) or not isinstance(info.get("arch"), dict):
            raise ValueError("no 'arch' object")
        arch = info["arch"]
        if not isinstance(arch.get("name"), str):
            raise ValueError(f"arch 'name' is {arch.get('name')!r}, not a string")
        if not isinstance(arch.get("kwargs") or {}, dict):
            raise ValueError(f"arch 'kwargs' is {arch['kwargs']!r}, not an object")
    except (KeyError, ValueError, RecursionError) as e:
        msg = "nested too deeply" if isinstance(e, RecursionError) else one_line(e)
        raise CheckpointError(f"{path}: checkpoint metadata 'info' is malformed: {msg}") from None
    return meta, info, shapes


def read_checkpoint_info(path: str | os.PathLike) -> dict:
    """The ``info`` dict of a checkpoint (arch, training, metrics, versions), tensors unread."""
    path = _existing(path)
    with errors_as(CheckpointError, path):
        return _read(path)[1]


def _build(path: Path, build: Callable[..., nn.Module], name: str, kwargs: dict) -> nn.Module:
    """``build(name, **kwargs)``; whatever the builder raises becomes a ``CheckpointError``."""
    try:
        return build(name, **kwargs)
    except Exception as e:  # the file's kwargs reach arbitrary builder code
        raise CheckpointError(
            f"{path}: cannot build model {name!r} {kwargs}: {type(e).__name__}: {one_line(e)}"
        ) from None


def _check_fit(path: Path, name: str, expected: Mapping[str, Any], shapes: Mapping) -> None:
    """Refuse tensors (``shapes``: name -> shape) that do not match the model's state."""
    missing = [k for k in expected if k not in shapes]
    extra = [k for k in shapes if k not in expected]
    wrong = [
        f"{k}: file {tuple(shapes[k])}, model {tuple(expected[k].shape)}"
        for k in expected
        if k in shapes
        and isinstance(expected[k], torch.Tensor)
        and tuple(shapes[k]) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing}")
    if extra:
        problems.append(f"unexpected tensors {extra}")
    if wrong:
        problems.append("shape mismatch " + "; ".join(wrong))
    if problems:
        raise CheckpointError(
            f"{path}: checkpoint does not fit model {name!r}: " + ", ".join(problems)
        )


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "float" if dtype.is_floating_point else "integer"


#: Float dtypes a file may hold (torch cannot test the float8 kinds for NaN)
_FLOATS = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})


def value_problem(tensors: Mapping[str, torch.Tensor], expected: Mapping) -> str | None:
    """What is wrong with ``tensors`` as values for the like-named tensors of ``expected``
    (a ``state_dict``), or ``None``: another kind of dtype (float, integer, bool, complex),
    a float dtype torch cannot check, or NaN / inf once in the model's dtype (a float64
    ``1e300`` is inf in float32)."""
    bad = []
    for k, t in tensors.items():
        want = expected.get(k)
        if not isinstance(want, torch.Tensor):
            continue
        if _kind(t.dtype) != _kind(want.dtype):
            return f"tensor {k!r} has dtype {t.dtype}, the model's is {want.dtype}"
        if t.is_floating_point() and t.dtype not in _FLOATS:
            return f"tensor {k!r} has dtype {t.dtype}, which nvmsim does not read"
        if t.is_floating_point() and not bool(torch.isfinite(t.to(want.dtype)).all()):
            bad.append(k)
    if not bad:
        return None
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    return f"tensor(s) {bad[:5]}{more} contain NaN or inf values (in the model's dtype)"


def _check_values(path: Path, tensors: Mapping[str, torch.Tensor], expected: Mapping) -> None:
    """Refuse tensors with NaN/inf values or of another kind of dtype than the model's."""
    problem = value_problem(tensors, expected)
    if problem:
        raise CheckpointError(f"{path}: {problem}")


def load_checkpoint(
    path: str | os.PathLike,
    build: Callable[..., nn.Module] | nn.Module | None = None,
) -> tuple[nn.Module, dict]:
    """Rebuild the model saved at ``path``, load its weights; return ``(model, info)``.

    By default the model is ``nvmsim.models.build(arch["name"], **arch["kwargs"])``; pass
    ``build`` (called the same way) for models outside the registry, or an ``nn.Module`` to
    load the weights into. A builder is called twice: first on the meta device, so that the
    tensor names and shapes in the file's header are checked against the model without
    allocating it (a builder must work under ``torch.device("meta")``), then for real. Keys
    and shapes must match exactly; NaN/inf values are refused. The model is returned in eval
    mode (call ``.train()`` to go on training).
    """
    path = _existing(path)
    with errors_as(CheckpointError, path):
        meta, info, shapes = _read(path)
        arch = info["arch"]
        name, kwargs = arch["name"], arch.get("kwargs") or {}
        size = len(json.dumps(arch))
        if not isinstance(build, nn.Module) and size > MAX_ARCH_BYTES:
            raise CheckpointError(
                f"{path}: arch is {size} bytes of JSON, more than the {MAX_ARCH_BYTES} a model "
                "is built from"
            )
        if build is None:
            from nvmsim.models import build as registry_build

            build = registry_build
        if isinstance(build, nn.Module):
            expected = build.state_dict()
        else:
            with torch.device("meta"):
                expected = _build(path, build, name, kwargs).state_dict()
        _check_fit(path, name, expected, shapes)
        tensors = read_safetensors(
            path, FORMAT, FORMAT_VERSION, "checkpoint", CheckpointError, with_tensors=True
        )[0]
        if meta.get("sha256") != _digest(tensors):  # also if the file changed since _read
            raise CheckpointError(f"{path}: checksum mismatch, the tensor data is corrupted")
        _check_values(path, tensors, expected)
        ranges = None
        if "input_ranges" in info:
            try:
                ranges = checked_ranges(info["input_ranges"], f"{path}: metadata")
            except ValueError as e:
                raise CheckpointError(str(e)) from None
        model = build if isinstance(build, nn.Module) else _build(path, build, name, kwargs)
        model.load_state_dict(tensors, strict=True)
        if ranges is not None:
            attach_ranges(model, ranges)
        return model.eval(), info
