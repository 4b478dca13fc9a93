import pytest


def make_rows(models=("mlp",), kind="additive"):
    """Stored-run dicts as ``Store.rows`` gives them: two test-noise levels x three read-noise
    sigmas per model, accuracy 0.9 - syn - te, software accuracy 0.91."""
    rows = []
    for model in models:
        for te in (0.0, 0.1):
            for syn in (0.0, 0.1, 0.2):
                config = {
                    "model": model, "source": {"arch": model, "checkpoint": None},
                    "kwargs": {"sizes": [64, 10]},
                    "train": {"epochs": 3, "batch_size": 64, "lr": 0.01, "seed": 0},
                    "data": {"dataset": "digits", "preprocess": "unit"},
                    "analog": {"device": {"read_noise": {"kind": kind, "sigma": syn},
                                          "g_points": []},
                               "crossbar": {"tile_rows": 256}, "seed": 1234 + len(rows)},
                    "scenario": {"sigma_te": te, "test_noise": "gaussian"},
                    "seed": 7,
                }  # fmt: skip
                metrics = {
                    "accuracy": 0.9 - syn - te, "accuracy_std": 0.01, "repeats": 10,
                    "accuracy_all": [0.9 - syn - te] * 10, "software_accuracy": 0.91,
                    "test_images": 360,
                }  # fmt: skip
                axes = {"sigma_syn": syn, "sigma_te": te}
                if len(models) > 1:
                    axes["model"] = model
                rows.append({
                    "run_id": f"r{len(rows)}", "axes": axes, "config": config,
                    "metrics": metrics, "seed": 7,
                    "versions": {"nvmsim": "0.1.0", "torch": "2.13.0", "commit": "abc123"},
                    "started": 1_796_000_000.0 + 60 * len(rows), "seconds": 1.5 + len(rows),
                })  # fmt: skip
    return rows


@pytest.fixture
def rows():
    return make_rows()
