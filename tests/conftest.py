"""Hypothesis draws the same examples on every run (``derandomize``): several properties are
statistical (explicit sampling against exact moments, with stated tolerances), and a test
suite must give the same verdict on every machine. ``HYPOTHESIS_PROFILE=explore`` searches
with fresh random examples instead."""

import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
