"""nvmsim: neural networks on analog non-volatile-memory crossbars, fast and validated."""

from nvmsim.config import AnalogConfig, ConverterConfig, CrossbarConfig, DeviceConfig

__version__ = "0.1.0"

__all__ = [
    "AnalogConfig",
    "ConverterConfig",
    "CrossbarConfig",
    "DeviceConfig",
    "__version__",
    "convert",
]


def __getattr__(name: str):
    if name == "convert":
        from nvmsim.nn.convert import convert

        return convert
    raise AttributeError(f"module 'nvmsim' has no attribute {name!r}")
