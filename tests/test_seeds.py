"""Derived seeds: pinned numbers (stored results depend on them), determinism, distinctness."""

from __future__ import annotations

import pytest

from nvmsim.seeds import derive_seed, onchip_seed, spawn_seeds


@pytest.mark.parametrize(
    ("parts", "want"),
    [
        (("train", "abc"), 4420907276758408657),
        (("eval", {"b": 2, "a": 1}), 4263834012290318376),
        ((7, 3), 1122952132205379583),
    ],
)
def test_derive_seed_pinned(parts, want):
    assert derive_seed(*parts) == want


@pytest.mark.parametrize(
    ("parts", "want"),
    [
        ((0, 1, "init"), 4049932656641655592),
        ((42, 0), 2070797902205246677),
        ((123456789, 7), 3096106693428793197),
    ],
)
def test_onchip_seed_pinned(parts, want):
    assert onchip_seed(*parts) == want


def test_spawn_seeds_pinned():
    assert spawn_seeds(0, 3) == [900450186894289455, 3969543146641149120, 1895649597198586619]
    assert spawn_seeds(12345, 2) == [3313331985788775909, 1224412975271905409]


def test_ranges():
    assert all(0 <= derive_seed("x", i) < 2**63 for i in range(100))
    assert all(0 <= onchip_seed("x", i) < 2**62 for i in range(100))
    assert all(0 <= s < 2**62 for s in spawn_seeds(3, 100))


def test_deterministic_and_key_order_free():
    assert derive_seed("eval", {"a": 1, "b": 2}) == derive_seed("eval", {"b": 2, "a": 1})
    assert onchip_seed(5, 2, "init") == onchip_seed(5, 2, "init")
    assert spawn_seeds(9, 4) == spawn_seeds(9, 4)


def test_distinct_parts_give_distinct_seeds():
    assert len({derive_seed("run", i) for i in range(1000)}) == 1000
    assert len({onchip_seed(7, i) for i in range(1000)}) == 1000
    assert len(set(spawn_seeds(1, 1000))) == 1000
    assert derive_seed(1, 2) != derive_seed(2, 1)
    assert derive_seed(12, 3) != onchip_seed(12, 3)  # two formulas, kept apart on purpose


def test_spawn_prefix_is_stable():
    # a network with one more layer keeps the seeds of the layers it shares
    assert spawn_seeds(11, 5)[:3] == spawn_seeds(11, 3)
