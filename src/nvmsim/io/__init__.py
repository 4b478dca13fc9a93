"""Import Keras models (h5py, no TensorFlow) and save/load nvmsim checkpoints (safetensors)."""

from nvmsim.io.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from nvmsim.io.keras import KerasImportError, load_keras

__all__ = [
    "CheckpointError",
    "KerasImportError",
    "load_checkpoint",
    "load_keras",
    "read_checkpoint_info",
    "save_checkpoint",
]
