"""A run's trained network: standard or hardware-aware, trained once and cached."""

import torch

from nvmsim.studies.runner import trained_model
from nvmsim.studies.schema import load_study
from nvmsim.studies.sweep import expand

HWA = 'lr = 3e-3, mode = "hwa", analog = { device = "pcm" }, hwa = { clip_sigma = 3.0 } }'


def test_hwa_model_is_trained_on_its_device_and_cached(write_study, tmp_path):
    standard = expand(load_study(write_study(sweep="sigma_syn = [0.0]"))[0])[0]
    path = write_study(name="h", sweep="sigma_syn = [0.0]")
    path.write_text(path.read_text().replace("lr = 3e-3 }", HWA))
    hwa = expand(load_study(path)[0])[0]
    a = trained_model(hwa.spec, hwa.train_key, tmp_path)
    assert (tmp_path / f"{hwa.train_key}.safetensors").is_file()
    again = trained_model(hwa.spec, hwa.train_key, tmp_path)  # from the cache
    s = trained_model(standard.spec, standard.train_key, tmp_path)
    wa, wb, ws = (dict(m.named_parameters())["1.weight"] for m in (a, again, s))
    assert torch.equal(wa, wb)
    assert not torch.allclose(wa, ws)
    wa = wa.detach()
    assert float(wa.abs().max()) <= 3.0 * float(wa.std()) * 1.0001  # clipped every step


def test_learned_dac_ranges_are_cached_with_the_network(write_study, tmp_path):
    from nvmsim.nn.input_range import learned_ranges

    learned = (
        'lr = 3e-3, mode = "hwa", analog = { converter = { dac_bits = 4 } }, '
        'hwa = { input_range = "learned" } }'
    )
    path = write_study(name="r", sweep="sigma_syn = [0.0]")
    path.write_text(path.read_text().replace("lr = 3e-3 }", learned))
    run = expand(load_study(path)[0])[0]
    trained = learned_ranges(trained_model(run.spec, run.train_key, tmp_path))
    cached = learned_ranges(trained_model(run.spec, run.train_key, tmp_path))
    assert cached == trained and set(trained) == {"1", "3"}
