from torch import nn
from typer.testing import CliRunner

from nvmsim.cli import app
from nvmsim.models import REGISTRY, build
from nvmsim.models.catalog import catalog, entry, takes


def test_every_registry_entry_is_listed_with_its_parameter_count():
    entries = {e.name: e for e in catalog()}
    assert set(entries) == set(REGISTRY)
    model = build("resnet18")
    assert entries["resnet18"].parameters == sum(p.numel() for p in model.parameters())
    assert entries["resnet18"].fits == ("cifar10",)
    assert entries["cnn000"].fits == ("mnist", "fashion-mnist")


def test_generic_mlp_shows_its_kwargs_and_what_sizes_fit_each_dataset():
    mlp = entry("mlp")
    assert mlp.kwargs == "sizes, sigma_neu=0.0, bounded=False" and mlp.parameters is None
    assert "digits (sizes[0] = 64, sizes[-1] = 10)" in mlp.fits


def test_a_flat_input_model_gets_the_crop_that_fits():
    assert entry("mlp528").fits[0] == "mnist (data.crop = [22, 24])"


def test_takes_checks_input_shape_and_class_count():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert takes(model, (1, 8, 8), 10)
    assert not takes(model, (1, 28, 28), 10) and not takes(model, (1, 8, 8), 5)


def test_models_command_lists_them(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    res = CliRunner().invoke(app, ["models"])
    assert res.exit_code == 0, res.output
    for name in REGISTRY:
        assert name in res.output
    assert "11,173,962" in res.output and "sizes, sigma_neu=0.0, bounded=False" in res.output
