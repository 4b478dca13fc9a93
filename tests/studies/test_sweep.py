import pytest

from nvmsim.config import ConfigError
from nvmsim.studies.schema import load_study
from nvmsim.studies.spec import RunSpec
from nvmsim.studies.study import plan
from nvmsim.studies.sweep import expand


def test_cartesian_and_zipped_axes(write_study):
    spec, _ = load_study(write_study(sweep="sigma_syn = [0.0, 0.1, 0.2]\nsigma_te = [0.0, 0.1]"))
    runs = expand(spec)
    assert len(runs) == 6 and len({r.run_id for r in runs}) == 6
    assert len({r.train_key for r in runs}) == 1  # one model to train for all points
    r = next(r for r in runs if r.axes == {"sigma_syn": 0.2, "sigma_te": 0.1})
    assert r.config["analog"]["device"]["read_noise"]["sigma"] == 0.2
    assert r.config["scenario"]["sigma_te"] == 0.1
    zipped = "sigma_te = [0.0, 0.1]\n[[sweep.zip]]\nsigma_syn = [0.0, 0.1, 0.2]\nbits = [8, 6, 4]"
    spec, _ = load_study(write_study(sweep=zipped))
    runs = expand(spec)
    assert len(runs) == 6
    assert {(r.axes["sigma_syn"], r.axes["bits"]) for r in runs} == {(0.0, 8), (0.1, 6), (0.2, 4)}


def test_training_axes_change_the_train_key(write_study):
    spec, _ = load_study(write_study(sweep="sigma_neu = [0.0, 0.1]\nsigma_syn = [0.0, 0.1]"))
    runs = expand(spec)
    assert len({r.train_key for r in runs}) == 2
    # training replicates: seed 0 is the default, so its key is the one without the axis
    spec, _ = load_study(write_study(sweep='"train.seed" = [0, 1, 2]'))
    keys = [r.train_key for r in expand(spec)]
    assert len(set(keys)) == 3
    assert keys[0] == expand(load_study(write_study(sweep="sigma_syn = [0.0]"))[0])[0].train_key


def test_hwa_training_is_its_own_train_key(write_study):
    base = expand(load_study(write_study())[0])[0]
    hwa = 'lr = 3e-3, mode = "hwa", analog = {{ device = "{}" }}, hwa = {{ t_train = 60.0 }} }}'

    def hwa_run(device):
        path = write_study(name="h")
        path.write_text(path.read_text().replace("lr = 3e-3 }", hwa.format(device)))
        return expand(load_study(path)[0])

    run = hwa_run("pcm")[0]
    assert run.train_key != base.train_key
    assert run.spec.train.analog.device.name == "pcm" and run.spec.train.hwa.t_train == 60.0
    with pytest.raises(ConfigError, match="unknown device preset 'nope'"):
        hwa_run("nope")


def test_quick_mode_caps_work(write_study):
    spec, _ = load_study(write_study(repeats=10))
    r = expand(spec, quick=True)[0]
    assert r.config["repeats"] == 3 and r.config["train"]["epochs"] == 2
    # digits has 1,437 training and 360 test images: the caps (2,000, 1,000) leave them whole
    assert r.config["train"]["train_subset"] is None and r.config["data"]["test_subset"] is None
    spec, _ = load_study(write_study(sweep='dataset = ["mnist"]'))
    r = expand(spec, quick=True)[0]
    assert r.config["train"]["train_subset"] == 2000 and r.config["data"]["test_subset"] == 1000


@pytest.mark.parametrize(
    ("sweep", "extra", "needle"),
    [
        ("sigma_sin = [0.1]", "", "unknown axis 'sigma_sin'"),
        ("sigma_syn = [-0.1]", "", "read_noise.sigma"),
        ("sigma_syn = []", "", "non-empty list"),
        ("bits = [40]", "", "device.bits"),
        (
            "sigma_syn = [0.1]",
            "[models.other]\ncheckpoint = 'missing.safetensors'\n",
            "file not found",
        ),
        ("sigma_syn = [0.1]", "bogus = 1\n", "bogus: unknown key"),
        ('"train.momentum" = [0.9]', "", "momentum applies to optimizer 'sgd' or 'rmsprop'"),
        ('"train.seed" = [-1]', "", "train.seed"),
        ('"train.mode" = ["hwa"]', "", "needs the training device in [train.analog]"),
        ('"train.hwa.t_train" = [10.0]', "", "apply only with train.mode = 'hwa'"),
        (
            "sigma_syn = [0.1]\n[[sweep.zip]]\nbits = [4, 6]\nsigma_te = [0.1]",
            "",
            "different lengths",
        ),
    ],
)
def test_bad_studies_fail_before_anything_runs(write_study, tmp_path, sweep, extra, needle):
    store = tmp_path / "store.sqlite"
    path = write_study(extra=extra, sweep=sweep)
    with pytest.raises(ConfigError) as err:
        plan(path, store=store)
    assert needle in str(err.value)
    assert not store.exists()


def test_malformed_toml_names_the_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("name = \n")
    with pytest.raises(ConfigError, match="bad.toml: malformed TOML"):
        plan(p)


def test_run_ids_ignore_settings_spelled_out_at_their_defaults(write_study):
    a = expand(load_study(write_study(name="a"))[0])
    b = expand(load_study(write_study(extra="[scenario]\nclip_inputs = false\n", name="a"))[0])
    assert [r.run_id for r in a] == [r.run_id for r in b]
    c = expand(load_study(write_study(extra="[scenario]\ndrift_time = 5.0\n", name="a"))[0])
    assert {r.run_id for r in a}.isdisjoint(r.run_id for r in c)


def test_seed_tree_of_a_standard_run_has_no_hardware_aware_keys(write_study):
    """Seeds are hashed from RunSpec.tree(): settings added for hardware-aware training must
    not enter the tree of a standard run, or every stored result's seeds would move."""
    run = expand(load_study(write_study(sweep="sigma_syn = [0.1]"))[0])[0]
    assert set(run.spec.tree()["train"]) == {
        "epochs", "batch_size", "lr", "optimizer", "momentum", "sigma_neu", "train_subset",
        "init", "seed",
    }  # fmt: skip
    assert "attention_products" not in run.spec.tree()["analog"]["converter"]  # a later option


def test_a_study_moved_elsewhere_keeps_its_ids_and_seeds(tmp_path):
    """Run ids, train keys and seeds follow a model file's contents and ignore where the
    study, its file and its data folder sit."""
    import numpy as np

    from nvmsim.studies.spec import hashed_tree
    from tests.io import keras_writer as kw

    def study_in(folder, payload_seed=0):
        folder.mkdir()
        rng = np.random.default_rng(payload_seed)
        dense = kw.dense("dense", rng.standard_normal((64, 10)).astype("f4"), np.zeros(10, "f4"))
        kw.write_legacy_h5(folder / "m.h5", [dense], (64,))
        (folder / "data").mkdir()
        path = folder / "s.toml"
        path.write_text(
            'name = "s"\n[models.m]\nkeras = "m.h5"\n[data]\ndataset = "digits"\n'
            'data_dir = "data"\n[sweep]\nsigma_syn = [0.0, 0.5]\n'
        )
        return expand(load_study(path)[0])

    a, b = study_in(tmp_path / "a"), study_in(tmp_path / "b")
    assert a[0].config["source"]["keras"] != b[0].config["source"]["keras"]  # the paths
    assert [r.run_id for r in a] == [r.run_id for r in b]
    assert [r.train_key for r in a] == [r.train_key for r in b]
    assert hashed_tree(a[1].config) == hashed_tree(b[1].config)
    assert a[1].spec.hashed()["source"]["keras"].startswith("sha256:")
    other = study_in(tmp_path / "c", payload_seed=1)  # another file: other ids and seeds
    assert {r.run_id for r in other}.isdisjoint(r.run_id for r in a)


def _study_with(write_study, old, new, sweep="sigma_syn = [0.0]"):
    path = write_study(sweep=sweep)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("lr = 3e-3", "lr = inf", r"models\.mlp\.train\.lr = inf: should be a finite number"),
        ("lr = 3e-3", "lr = nan", r"models\.mlp\.train\.lr = nan: should be "),
        ("lr = 3e-3", 'lr = "3e-3"', r"models\.mlp\.train\.lr = '3e-3': should be a number, "
         "not a string"),
        ("epochs = 3", "epochs = true", r"models\.mlp\.train\.epochs = True: should be an "
         "integer, not a boolean"),
        ("repeats = 3", "repeats = true", r"repeats = True: should be an integer, not a boolean"),
        ("repeats = 3", 'repeats = "3"', r"repeats = '3': should be an integer, not a string"),
        ('dataset = "digits"', 'dataset = "digits"\ncrop = ["8", 8]',
         r"data\.crop\.0 = '8': should be an integer, not a string"),
        ('dataset = "digits"', 'dataset = "digits"\n[scenario]\nretrain_lr = inf',
         r"scenario\.retrain_lr = inf: should be a finite number"),
        ('dataset = "digits"', 'dataset = "digits"\n[scenario]\nclip_inputs = 1',
         r"scenario\.clip_inputs = 1: should be a valid boolean"),
        ('dataset = "digits"', 'dataset = "digits"\n[scenario]\nsigma_te = "0.1"',
         r"scenario\.sigma_te = '0\.1': should be a number, not a string"),
        ("repeats = 3", "repeats = 3\n[quick]\nrepeats = false",
         r"quick\.repeats = False: should be an integer, not a boolean"),
    ],
)  # fmt: skip
def test_study_numbers_are_numbers_and_finite(write_study, old, new, match):
    study = _study_with(write_study, old, new)
    with pytest.raises(ConfigError, match=match) as info:
        load_study(study)
    assert str(info.value).startswith(f"{study}: ") and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("sweep", "match"),
    [
        ('sigma_syn = ["0.1"]', r"sweep point \{'sigma_syn': '0\.1'\}: analog: "
         r"device\.read_noise\.sigma = '0\.1': should be a number, not a string"),
        ("bits = [true]", r"analog: device\.bits = True: should be an integer, not a boolean"),
        ('sigma_te = ["0.1"]', r"scenario: sigma_te = '0\.1': should be a number"),
        ('"train.lr" = [inf]', r"train: lr = inf: should be a finite number"),
    ],
)  # fmt: skip
def test_axis_values_are_checked_as_strictly_as_the_file(write_study, sweep, match):
    spec, _ = load_study(write_study(sweep=sweep))
    with pytest.raises(ConfigError, match=match) as info:
        expand(spec, source="s.toml")
    assert str(info.value).startswith("s.toml: sweep point ") and "\n" not in str(info.value)


def test_integers_still_count_as_floats_in_a_study(write_study):
    study = _study_with(write_study, "lr = 3e-3", "lr = 1", sweep="sigma_syn = [0, 1]")
    runs = expand(load_study(study)[0])
    assert runs[0].spec.train.lr == 1.0
    assert [r.spec.analog.device.read_noise.sigma for r in runs] == [0.0, 1.0]


def test_only_runs_that_draw_at_read_on_a_new_stream_get_new_ids_and_seeds(write_study):
    """Results stored before ``read_noise_stream`` were drawn serially: a serial run (or one
    whose reads draw nothing) hashes as before; a blocked run with read noise is its own."""
    sweep = 'sigma_syn = [0.0, 0.1]\n"analog.read_noise_stream" = ["serial", "blocked"]'
    runs = {
        (r.axes["sigma_syn"], r.axes["analog.read_noise_stream"]): r
        for r in expand(load_study(write_study(sweep=sweep))[0])
    }
    assert (0.0, "blocked") not in runs  # the same run as (0.0, "serial"): one of them
    serial, blocked = runs[0.1, "serial"].spec.hashed(), runs[0.1, "blocked"].spec.hashed()
    assert "read_noise_stream" not in serial and "read_noise_stream" not in serial["analog"]
    assert blocked.pop("read_noise_stream") == "blocked" and blocked == serial
    assert runs[0.1, "serial"].run_id != runs[0.1, "blocked"].run_id
    # the tree that executors carry keeps the stream
    assert RunSpec.from_tree(runs[0.1, "serial"].config).analog.read_noise_stream == "serial"


def test_hardware_aware_training_on_a_new_stream_is_its_own_train_key(write_study):
    hwa = 'lr = 3e-3, mode = "hwa", analog = {{ device = "pcm"{} }} }}'

    def key(stream: str) -> tuple[str, dict]:
        path = write_study(name="h")
        path.write_text(path.read_text().replace("lr = 3e-3 }", hwa.format(stream)))
        run = expand(load_study(path)[0])[0]
        return run.train_key, run.spec.train_config()

    (serial, serial_cfg), (blocked, blocked_cfg) = key(', read_noise_stream = "serial"'), key("")
    assert serial != blocked
    assert "read_noise_stream" not in serial_cfg["train"]["analog"]
    assert blocked_cfg["read_noise_stream"] == "blocked" and "read_noise_stream" not in serial_cfg
