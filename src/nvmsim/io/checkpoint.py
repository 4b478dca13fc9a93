"""Checkpoints: one safetensors file holding the weights and, in its metadata, how to rebuild.

File format (one file, so one atomic ``os.replace`` publishes it whole):

* the tensors are the model's ``state_dict`` (safetensors: no pickle, nothing executable);
* the safetensors header metadata (string -> string) holds
  ``format = "nvmsim-checkpoint"``, ``format_version = "1"``, ``sha256`` (a digest of every
  tensor's name, dtype, shape and bytes, so corruption of the data is detected) and ``info``,
  a JSON object::

      {"arch": {"name": "mlp128", "kwargs": {...}},   # how to rebuild the model
       "training": {...} | null, "metrics": ... | null,
       "nvmsim_version": "0.1.0", "torch_version": "2.13.0", "created": "2025-...Z"}

  The header is plain JSON at the start of the file (after an 8-byte length), so
  ``read_checkpoint_info(path)`` reads it without loading the tensors.

``save_checkpoint`` writes to a temporary file in the same folder, fsyncs it and renames it
over ``path``; a crash leaves either the old checkpoint or the new one, never half of one,
and the temporary file is removed on any error.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as _st_save
from torch import nn

__all__ = ["CheckpointError", "load_checkpoint", "read_checkpoint_info", "save_checkpoint"]

FORMAT = "nvmsim-checkpoint"
FORMAT_VERSION = "1"


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
    try:
        tensors = _state_tensors(model)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sha256": _digest(tensors),
        "info": json.dumps(info),
    }
    return atomic_write(path, _st_save(tensors, metadata=metadata))


def atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it and rename it over
    ``path``: readers see the old file or the new one, never half of one."""
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable where the OS allows it
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path


def read_safetensors(
    path: Path, fmt: str, version: str, kind: str, error: type[Exception], with_tensors: bool
) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a safetensors file tagged ``format = fmt`` at ``version``;
    anything else raises ``error`` naming the file and calling it a ``kind``."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()} if with_tensors else {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise error(f"{path}: not a readable {kind} (truncated or corrupted?): {e}") from e
    if meta.get("format") != fmt:
        raise error(f"{path}: not an nvmsim {kind} (no {fmt!r} metadata)")
    if meta.get("format_version") != version:
        raise error(
            f"{path}: {kind} format version {meta.get('format_version')!r} is not "
            f"supported (this nvmsim reads version {version})"
        )
    return tensors, meta


def _read(path: Path, with_tensors: bool) -> tuple[dict[str, torch.Tensor], dict, dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    tensors, meta = read_safetensors(
        path, FORMAT, FORMAT_VERSION, "checkpoint", CheckpointError, with_tensors
    )
    try:
        info = json.loads(meta["info"])
        if not isinstance(info, dict) or not isinstance(info.get("arch"), dict):
            raise ValueError("no 'arch' object")
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: checkpoint metadata 'info' is malformed: {e}") from e
    return tensors, meta, info


def read_checkpoint_info(path: str | os.PathLike) -> dict:
    """The ``info`` dict of a checkpoint (arch, training, metrics, versions), tensors unread."""
    return _read(Path(path), with_tensors=False)[2]


def load_checkpoint(
    path: str | os.PathLike,
    build: Callable[..., nn.Module] | nn.Module | None = None,
) -> tuple[nn.Module, dict]:
    """Rebuild the model saved at ``path``, load its weights; return ``(model, info)``.

    By default the model is ``nvmsim.models.build(arch["name"], **arch["kwargs"])``; pass
    ``build`` (called the same way) for models outside the registry, or an ``nn.Module`` to
    load the weights into. Keys and shapes must match exactly. The model is returned in eval
    mode (call ``.train()`` to go on training).
    """
    path = Path(path)
    tensors, meta, info = _read(path, with_tensors=True)
    if meta.get("sha256") != _digest(tensors):
        raise CheckpointError(f"{path}: checksum mismatch, the tensor data is corrupted")
    arch = info["arch"]
    name, kwargs = arch.get("name"), arch.get("kwargs") or {}
    if isinstance(build, nn.Module):
        model = build
    else:
        if build is None:
            from nvmsim.models import build as registry_build

            build = registry_build
        try:
            model = build(name, **kwargs)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: cannot build model {name!r} {kwargs}: {e}") from e

    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    wrong = [
        f"{k}: file {tuple(tensors[k].shape)}, model {tuple(expected[k].shape)}"
        for k in expected
        if k in tensors
        and isinstance(expected[k], torch.Tensor)
        and tensors[k].shape != expected[k].shape
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
    model.load_state_dict(tensors, strict=True)
    return model.eval(), info
