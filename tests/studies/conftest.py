import textwrap

import pytest


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
