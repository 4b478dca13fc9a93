"""Torch modules that compute on analog crossbars: drop-in replacements for Linear/Conv2d."""

from nvmsim.nn.activations import BoundedReLU, NoisyActivation
from nvmsim.nn.conv import AnalogConv2d
from nvmsim.nn.convert import analog_layers, convert, drift_to, program
from nvmsim.nn.linear import AnalogLinear

__all__ = [
    "AnalogConv2d",
    "AnalogLinear",
    "BoundedReLU",
    "NoisyActivation",
    "analog_layers",
    "convert",
    "drift_to",
    "program",
]
