"""Exceptions raised by the dataset loaders.

All of them are ``ValueError`` subclasses so that callers validating user input can catch
one type; each message names the file and the problem.
"""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset file is malformed, inconsistent, or cannot be found."""


class DatasetNotFoundError(DatasetError):
    """The files of a dataset are not on this machine and could not be downloaded."""


class ChecksumError(DatasetError):
    """A file's MD5 differs from the one its authors publish."""
