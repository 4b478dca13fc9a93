"""The Ray executor and a real cluster: it joins one started with ``ray start --head`` (with
token authentication on), fails in seconds with one line where it cannot, and starts a private
instance when no address is given, even with another cluster running on this machine.

One head serves the whole module. It runs in its own session and temporary directory
(``RAY_TMPDIR``), and is stopped by killing its process group: never ``ray stop``, which stops
every Ray instance on the machine.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from nvmsim.studies.executors import ExecutorError, connect, execute
from nvmsim.studies.study import plan

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'nvmsim[ray]')")

STUDY = """
name = "r"
repeats = 2
[models.mlp]
arch = "mlp"
kwargs = { sizes = [64, 24, 10] }
train = { epochs = 3, batch_size = 64, lr = 3e-3 }
[data]
dataset = "digits"
[analog]
device = { on_off_ratio = 10 }
[sweep]
sigma_syn = [0.0, 0.2]
"""


@dataclass
class Head:
    address: str  # as Ray records it (the node's IP, even for --node-ip-address 127.0.0.1)
    port: int
    token: str
    root: Path  # RAY_TMPDIR of the head: its cluster is the default one there
    proc: subprocess.Popen

    def alive(self) -> bool:
        return self.proc.poll() is None and _listening("127.0.0.1", self.port)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def _ray_cli() -> list[str]:
    exe = Path(sys.executable).with_name("ray")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ray.scripts.scripts"]


@pytest.fixture(scope="module")
def head():
    # A short root: Ray's Unix socket paths under it must fit in 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="nvray-"))
    token = secrets.token_hex(16)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_TMPDIR=str(root), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    cmd = [*_ray_cli(), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
           "--port", str(port), "--num-cpus", "1", "--include-dashboard=false",
           "--disable-usage-stats", "--temp-dir", str(root / "ray")]  # fmt: skip
    log = root / "head.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        address_file = root / "ray" / "ray_current_cluster"
        deadline = time.monotonic() + 90
        while not (address_file.is_file() and _listening("127.0.0.1", port)):
            if proc.poll() is not None:
                tail = " | ".join(log.read_text().strip().splitlines()[-3:])
                pytest.skip(f"`ray start --head` failed (exit {proc.returncode}): {tail}")
            if time.monotonic() > deadline:
                pytest.skip("`ray start --head` did not come up within 90 s")
            time.sleep(0.2)
        address = address_file.read_text().strip()
        yield Head(address, port, token, root, proc)
    finally:
        try:  # the whole session: Ray's processes outlive `ray start` for many seconds
            os.killpg(proc.pid, signal.SIGKILL)  # this head's session only
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """(training tasks, evaluation tasks) of a two-run study, as ``run_plan`` makes them."""
    path = tmp_path_factory.mktemp("study") / "r.toml"
    path.write_text(textwrap.dedent(STUDY))
    runs = plan(path).runs
    keys = {r.train_key: r for r in runs}
    return (
        [("train", r.config, k) for k, r in keys.items()],
        [("eval", r.config, r.train_key) for r in runs],
    )


def _results(tasks, cache_dir: Path, executor, **kw) -> dict[int, dict]:
    train, evals = tasks
    for _, result, _, _ in execute(train, cache_dir, executor, 1, **kw):
        assert "error" not in result, result
    out = {i: m for i, m, _, _ in execute(evals, cache_dir, executor, 1, **kw)}
    assert len(out) == len(evals) and not any("error" in m for m in out.values()), out
    return out


@pytest.fixture(scope="module")
def reference(tasks, tmp_path_factory):
    return _results(tasks, tmp_path_factory.mktemp("local") / "models", "local")


@pytest.fixture
def client(monkeypatch, tmp_path):
    """This process as a client with no Ray settings: no address, no token, an empty home."""
    for var in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)  # and restored after, whatever the test set
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


@pytest.mark.slow
def test_a_running_cluster_runs_the_tasks_as_local_does(head, client, tasks, reference, tmp_path):
    """The head requires its token; found in RAY_AUTH_TOKEN (or ~/.ray/auth_token), it is
    sent although RAY_AUTH_MODE is unset, where ray.init alone would retry for 20 s."""
    client.setenv("RAY_AUTH_TOKEN", head.token)
    with connect("ray", head.address, 1) as ex:
        assert ex.address == head.address
        assert ray.get_runtime_context().gcs_address == head.address
        assert ray.cluster_resources()["CPU"] == 1  # the head's, not a new instance's
    assert not ray.is_initialized()
    assert _results(tasks, tmp_path / "models", "ray", address=head.address) == reference
    assert head.alive()


@pytest.mark.slow
def test_ray_address_and_the_token_in_the_home_directory_are_used(head, client, tmp_path):
    """No address given: $RAY_ADDRESS names the cluster (as `ray start` suggests exporting)."""
    token_file = tmp_path / "home" / ".ray" / "auth_token"  # where `ray start` reads its own
    token_file.parent.mkdir(parents=True)
    token_file.write_text(head.token)
    client.setenv("RAY_ADDRESS", f"127.0.0.1:{head.port}")
    with connect("ray", None, 1) as ex:
        assert ex.address == f"127.0.0.1:{head.port}"
        assert ray.get_runtime_context().gcs_address == head.address


@pytest.mark.slow
@pytest.mark.parametrize(
    "env, says",
    [
        ({}, "requires an authentication token and none was found"),
        ({"RAY_AUTH_TOKEN": "0" * 32}, "rejected the authentication token from RAY_AUTH_TOKEN"),
        ({"RAY_AUTH_TOKEN": "right", "RAY_AUTH_MODE": "disabled"}, "RAY_AUTH_MODE=disabled"),
    ],
    ids=["none", "wrong", "disabled"],
)
def test_a_missing_or_wrong_token_is_one_line(head, client, env, says):
    for var, value in env.items():
        client.setenv(var, head.token if value == "right" else value)
    t0 = time.monotonic()
    with pytest.raises(ExecutorError) as info:
        connect("ray", head.address, 1)
    message = str(info.value)
    assert says in message and head.address in message and "\n" not in message
    err = info.value  # nothing chained: the CLI prints this one line, no traceback
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    assert time.monotonic() - t0 < 15
    assert not ray.is_initialized()


@pytest.mark.parametrize("address", ["closed", "no-port-here"])
def test_a_wrong_address_fails_fast_in_one_line(client, address):
    if address == "closed":
        address = f"127.0.0.1:{_free_port()}"  # free: nothing listens there
    t0 = time.monotonic()
    with pytest.raises(ExecutorError) as info:
        connect("ray", address, 1)
    message = str(info.value)
    assert address in message and "\n" not in message
    assert time.monotonic() - t0 < 30  # ray.init alone: 20 s of retries, then a traceback
    assert not ray.is_initialized()
    with pytest.raises(ExecutorError, match=address):  # execute(...) says the same
        list(execute([], Path("unused"), "ray", 1, address=address))


def test_a_failed_start_leaves_no_store(client, write_study, tmp_path):
    from typer.testing import CliRunner

    from nvmsim.cli import app

    store = tmp_path / "results" / "s.sqlite"
    argv = ["run", str(write_study()), "--store", str(store), "--executor", "ray"]
    res = CliRunner().invoke(app, [*argv, "--address", f"127.0.0.1:{_free_port()}"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert not store.parent.exists()


@pytest.mark.slow
def test_no_address_starts_a_private_instance_beside_a_running_cluster(
    head, client, tasks, reference, tmp_path
):
    """With the head as this machine's default cluster (ray.init(num_cpus=...) would try to
    join it, and refuse), no address still means a new instance of our own."""
    client.setenv("RAY_TMPDIR", str(head.root))
    assert (head.root / "ray" / "ray_current_cluster").read_text().strip() == head.address
    with connect("ray", None, 1) as ex:
        assert ex.address is None
        assert ray.get_runtime_context().gcs_address != head.address
        got = _results(tasks, tmp_path / "models", ex)
    assert not ray.is_initialized()
    assert got == reference
    assert head.alive()  # closing our instance left the other cluster alone
