"""Dataset loaders and test-set perturbations."""

from nvmsim.data.errors import ChecksumError, DatasetError, DatasetNotFoundError
from nvmsim.data.loaders import describe_local, load
from nvmsim.data.perturb import KINDS, gaussian, perturb, salt_pepper, speckle
from nvmsim.data.registry import DATASETS, DatasetInfo, FileInfo, get_info

__all__ = [
    "DATASETS",
    "KINDS",
    "ChecksumError",
    "DatasetError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "FileInfo",
    "describe_local",
    "gaussian",
    "get_info",
    "load",
    "perturb",
    "salt_pepper",
    "speckle",
]
