"""What each dataset is: shape, classes, files (byte sizes and MD5s) and where to get them.

The sizes and MD5s of the archives are those published with the datasets (see
``shared/data/MANIFEST.md``). ``raw_md5`` / ``raw_size`` describe the decompressed IDX files
(what ``gunzip`` or torchvision leave behind); they were computed from the official ``.gz``
files, so an un-gzipped copy can be verified too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nvmsim.data.errors import DatasetError

_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"


@dataclass(frozen=True)
class FileInfo:
    """One published file: its name, byte size, MD5 and download address."""

    name: str
    size: int
    md5: str
    url: str
    raw_size: int | None = None
    raw_md5: str | None = None

    @property
    def raw_name(self) -> str | None:
        """Name of the decompressed file (``x.gz`` -> ``x``), or None if not gzipped."""
        return self.name[:-3] if self.name.endswith(".gz") else None


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset: image shape ``(C, H, W)``, class names, sizes of the splits and files.

    ``splits`` maps ``"train"`` / ``"test"`` to the names of the files (IDX datasets: images
    then labels) or archive members (CIFAR-10 batches) that hold that split. ``dirs`` are the
    sub-folders of a data root searched besides the root itself.
    """

    name: str
    shape: tuple[int, int, int]
    classes: tuple[str, ...]
    num_train: int
    num_test: int
    format: str  # "idx", "cifar-binary" or "sklearn"
    splits: dict[str, tuple[str, ...]] = field(hash=False)
    files: tuple[FileInfo, ...] = ()
    dirs: tuple[str, ...] = ()
    homepage: str = ""
    scale: float = 255.0  # raw pixel value that maps to 1.0

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def file(self, name: str) -> FileInfo:
        """The published file called ``name`` (or its decompressed name)."""
        for f in self.files:
            if name in (f.name, f.raw_name):
                return f
        raise KeyError(name)


def _idx_files(url: str, sizes_md5: dict[str, tuple[int, str, str]]) -> tuple[FileInfo, ...]:
    raw_sizes = {"train-images": 47_040_016, "train-labels": 60_008}
    raw_sizes |= {"t10k-images": 7_840_016, "t10k-labels": 10_008}
    out = []
    for name, (size, md5, raw_md5) in sizes_md5.items():
        stem = name.split("-idx")[0]
        out.append(FileInfo(name, size, md5, url + name, raw_sizes[stem], raw_md5))
    return tuple(out)


_IDX_SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

MNIST = DatasetInfo(
    name="mnist",
    shape=(1, 28, 28),
    classes=tuple(str(i) for i in range(10)),
    num_train=60_000,
    num_test=10_000,
    format="idx",
    splits=_IDX_SPLITS,
    files=_idx_files(
        _MNIST_URL,
        {
            "train-images-idx3-ubyte.gz": (
                9_912_422,
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "6bbc9ace898e44ae57da46a324031adb",
            ),
            "train-labels-idx1-ubyte.gz": (
                28_881,
                "d53e105ee54ea40749a09fcbcd1e9432",
                "a25bea736e30d166cdddb491f175f624",
            ),
            "t10k-images-idx3-ubyte.gz": (
                1_648_877,
                "9fb629c4189551a2d022fa330f9573f3",
                "2646ac647ad5339dbf082846283269ea",
            ),
            "t10k-labels-idx1-ubyte.gz": (
                4_542,
                "ec29112dd5afa0611ce80d1b7f02629c",
                "27ae3e4e09519cfbb04c329615203637",
            ),
        },
    ),
    dirs=("mnist", "MNIST/raw"),
    homepage="http://yann.lecun.com/exdb/mnist/",
)

FASHION_MNIST = DatasetInfo(
    name="fashion-mnist",
    shape=(1, 28, 28),
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    num_train=60_000,
    num_test=10_000,
    format="idx",
    splits=_IDX_SPLITS,
    files=_idx_files(
        _FASHION_URL,
        {
            "train-images-idx3-ubyte.gz": (
                26_421_880,
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            ),
            "train-labels-idx1-ubyte.gz": (
                29_515,
                "25c81989df183df01b3e8a0aad5dffbe",
                "9018921c3c673c538a1fc5bad174d6f9",
            ),
            "t10k-images-idx3-ubyte.gz": (
                4_422_102,
                "bef4ecab320f06d8554ea6380940ec79",
                "8181f5470baa50b63fa0f6fddb340f0a",
            ),
            "t10k-labels-idx1-ubyte.gz": (
                5_148,
                "bb300cfdad3c16e7a12a480ee83cd310",
                "15d484375f8d13e6eb1aabb0c3f46965",
            ),
        },
    ),
    dirs=("fashion-mnist", "FashionMNIST/raw"),
    homepage="https://github.com/zalandoresearch/fashion-mnist",
)

CIFAR10_FOLDER = "cifar-10-batches-bin"
CIFAR10_RECORD = 1 + 3 * 32 * 32  # label byte + R, G, B planes of 32x32
CIFAR10_BATCH_SIZE = 10_000 * CIFAR10_RECORD  # bytes of one official batch file

CIFAR10 = DatasetInfo(
    name="cifar10",
    shape=(3, 32, 32),
    classes=(
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
    num_train=50_000,
    num_test=10_000,
    format="cifar-binary",
    splits={
        "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        "test": ("test_batch.bin",),
    },
    files=(
        FileInfo(
            "cifar-10-binary.tar.gz",
            170_052_171,
            "c32a1d4ab5d03f1284b67883e8d87530",
            _CIFAR_URL,
        ),
    ),
    dirs=("cifar10", "cifar-10"),
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
)

DIGITS = DatasetInfo(
    name="digits",
    shape=(1, 8, 8),
    classes=tuple(str(i) for i in range(10)),
    num_train=1_437,
    num_test=360,
    format="sklearn",
    splits={"train": (), "test": ()},
    homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
    scale=16.0,
)

DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (MNIST, FASHION_MNIST, CIFAR10, DIGITS)}

_ALIASES = {"fmnist": "fashion-mnist", "fashion": "fashion-mnist", "cifar-10": "cifar10"}


def get_info(name: str) -> DatasetInfo:
    """The registry entry for ``name`` (case and ``_``/``-`` insensitive)."""
    key = str(name).strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        known = ", ".join(DATASETS)
        raise DatasetError(f"unknown dataset {name!r} (known: {known})")
    return DATASETS[key]
