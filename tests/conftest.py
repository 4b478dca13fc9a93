"""Hypothesis draws the same examples on every run (``derandomize``): several properties are
statistical (explicit sampling against exact moments, with stated tolerances), and a test
suite must give the same verdict on every machine. ``HYPOTHESIS_PROFILE=explore`` searches
with fresh random examples instead."""

import os
import textwrap

import pytest
from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture
def write_study(tmp_path):
    """Write a small digits study (optionally with extra TOML) and return its path."""

    def _write(
        extra: str = "",
        sweep: str = "sigma_syn = [0.0, 0.2]\nsigma_te = [0.0, 0.1]",
        repeats=3,
        name="s",
    ):
        text = textwrap.dedent(
            f"""
            name = "{name}"
            repeats = {repeats}
            [models.mlp]
            arch = "mlp"
            kwargs = {{ sizes = [64, 24, 10] }}
            train = {{ epochs = 3, batch_size = 64, lr = 3e-3 }}
            [data]
            dataset = "digits"
            [analog]
            device = {{ on_off_ratio = 10 }}
            """
        )
        text += extra + "\n[sweep]\n" + sweep + "\n"
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        return path

    return _write
