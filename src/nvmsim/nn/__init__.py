"""Torch modules that compute on analog crossbars: drop-in replacements for torch layers."""

from nvmsim.crossbar.tile import NonFiniteError
from nvmsim.nn.activations import BoundedReLU, NoisyActivation
from nvmsim.nn.conv import AnalogConv1d, AnalogConv2d, AnalogConv3d
from nvmsim.nn.convert import (
    CONVERSION_MAP,
    UnconvertedError,
    analog_layers,
    convert,
    drift_to,
    program,
    register,
)
from nvmsim.nn.linear import AnalogLinear
from nvmsim.nn.summary import Summary, summary

__all__ = [
    "CONVERSION_MAP",
    "AnalogConv1d",
    "AnalogConv2d",
    "AnalogConv3d",
    "AnalogLinear",
    "BoundedReLU",
    "NoisyActivation",
    "NonFiniteError",
    "Summary",
    "UnconvertedError",
    "analog_layers",
    "convert",
    "drift_to",
    "program",
    "register",
    "summary",
]
