"""Keep data tests offline and out of ``~``: cache in tmp, no downloads, no staged data."""

from __future__ import annotations

import pytest

from nvmsim.data import sources


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("NVMSIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NVMSIM_NO_DOWNLOAD", "1")
    monkeypatch.delenv("NVMSIM_DATA", raising=False)
    monkeypatch.setattr(sources, "_checkout_data_dir", lambda: None)
    monkeypatch.setattr(sources, "_urlopen", _no_network)


def _no_network(url, timeout):
    raise AssertionError(f"tests must not touch the network (tried {url})")


@pytest.fixture
def parsed_dir(tmp_path):
    """The parse-cache folder used by the current test."""
    return tmp_path / "cache" / "parsed"
