"""Where runs execute: in this process, a local process pool, or a Ray cluster.

Every task runs with the same number of torch threads under every executor (one per worker
when there are several), so the same study gives bit-identical numbers under each.

:func:`connect` starts (or joins) the executor before anything else happens, so that a
caller can fail with one line, :class:`ExecutorError`, before it has written anything; the
:class:`Executor` it returns runs batches of tasks until it is closed. :func:`execute` does
both for one batch.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

Task = tuple[str, dict[str, Any], str]  # (kind, run config, train_key)
Result = tuple[int, dict[str, Any], float, float]  # (task index, result, start, seconds)

_WHERE_TOKENS_GO = (
    "put the head's token (`ray get-auth-token` there) in ~/.ray/auth_token, "
    "or set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
)
PROBE_TIMEOUT_S = 10.0  # a GCS answers in milliseconds; a port that is not one never does
TCP_TIMEOUT_S = 3.0


class ExecutorError(RuntimeError):
    """The executor cannot start or join its cluster; the message is one line that names
    the address (where there is one) and the cause."""


def threads_per_task(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers) if workers == 1 else 1


def run_task(task: Task, cache_dir: str, threads: int) -> tuple[dict[str, Any], float, float]:
    """Execute one task; returns (result, start time, seconds).

    A failure comes back as ``{"error": message}`` so that one bad run does not stop the
    others; the study reports it and stores nothing for that run.
    """
    import traceback

    import torch

    from nvmsim.studies import scenarios
    from nvmsim.studies.runner import trained_model
    from nvmsim.studies.spec import RunSpec

    if torch.get_num_threads() != threads:  # the call alone slows some kernels (workers.py)
        torch.set_num_threads(threads)
    kind, tree, key = task
    start = time.time()
    t0 = time.perf_counter()
    try:
        if kind == "train":
            trained_model(RunSpec.from_tree(tree), key, Path(cache_dir))
            result: dict[str, Any] = {}
        else:
            result = scenarios.evaluate(tree, key, Path(cache_dir))
    except Exception as err:  # reported per run by the caller
        last = traceback.extract_tb(err.__traceback__)[-1]
        where = f"{Path(last.filename).name}:{last.lineno}"
        result = {"error": f"{type(err).__name__}: {err} (at {where})"}
    return result, start, time.perf_counter() - t0


class Executor:
    """A started executor: ``execute`` runs batches of tasks on it until ``close``.

    ``address`` is the Ray cluster joined (None: this machine only). Use it as a context
    manager, or call ``close``; closing twice is harmless.
    """

    def __init__(self, kind: str, workers: int, address: str | None = None) -> None:
        self.kind = kind
        self.workers = max(1, workers)
        self.address = address
        self.threads = threads_per_task(self.workers)
        self._pool: ProcessPoolExecutor | None = None
        self._ray_started = False  # this executor called ray.init, so it shuts Ray down
        self._remote: Callable | None = None
        self.closed = False

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f" at {self.address}" if self.address else ""
        return f"<Executor {self.kind}{where}, {self.workers} workers>"

    def execute(self, tasks: Iterable[Task], cache_dir: Path) -> Iterator[Result]:
        """Yield ``(task index, result, start, seconds)`` as tasks finish.

        ``tasks`` is read lazily, one task per free worker, so a generator that claims each
        run as it hands it out claims no more than can run now.
        """
        if self.closed:
            raise ExecutorError(f"{self!r} is closed")
        if self.kind == "ray":
            return self._ray(tasks, cache_dir)
        if self.workers <= 1:
            return self._sequential(tasks, cache_dir)
        return self._in_pool(tasks, cache_dir)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        if self._ray_started:
            import ray

            self._ray_started = False
            ray.shutdown()

    def _sequential(self, tasks: Iterable[Task], cache_dir: Path) -> Iterator[Result]:
        for i, task in enumerate(tasks):
            yield (i, *run_task(task, str(cache_dir), self.threads))

    def _in_pool(self, tasks: Iterable[Task], cache_dir: Path) -> Iterator[Result]:
        if self._pool is None:  # started once, kept for every batch until close
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with_parent,
                initargs=(os.getpid(),),
            )
        pool = self._pool
        return _bounded(
            tasks,
            self.workers,
            submit=lambda t: pool.submit(run_task, t, str(cache_dir), self.threads),
            wait_any=lambda futs: wait(futs, return_when=FIRST_COMPLETED)[0],
            result=lambda fut: fut.result(),
            cancel=lambda fut: fut.cancel(),
        )

    def _ray(self, tasks: Iterable[Task], cache_dir: Path) -> Iterator[Result]:
        import ray

        if self._remote is None:
            self._remote = ray.remote(num_cpus=1)(run_task)
        remote = self._remote
        slots = self.workers  # a private instance has as many CPUs; a cluster may have more
        with contextlib.suppress(Exception):
            slots = max(slots, int(ray.cluster_resources().get("CPU", 0)))

        def result(ref):
            try:
                return ray.get(ref)
            except Exception as err:  # a worker or node lost: that run fails, not the study
                return {"error": f"{type(err).__name__}: {_first_line(err)}"}, time.time(), 0.0

        def cancel(ref):
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)

        return _bounded(
            tasks,
            slots,
            submit=lambda t: remote.remote(t, str(cache_dir), self.threads),
            wait_any=lambda refs: ray.wait(list(refs), num_returns=1)[0],
            result=result,
            cancel=cancel,
        )


def _bounded(tasks, slots, submit, wait_any, result, cancel) -> Iterator[Result]:
    """Keep at most ``slots`` tasks in flight, taking the next task only when one finishes."""
    todo = enumerate(tasks)
    pending: dict[Any, int] = {}
    more = True
    try:
        while True:
            while more and len(pending) < slots:
                nxt = next(todo, None)
                if nxt is None:
                    more = False
                else:
                    pending[submit(nxt[1])] = nxt[0]
            if not pending:
                return
            for handle in wait_any(pending):
                i = pending.pop(handle)
                yield (i, *result(handle))
    finally:
        for handle in pending:  # the caller stopped early: nothing keeps computing for it
            cancel(handle)


def connect(executor: str = "local", address: str | None = None, workers: int = 1) -> Executor:
    """Start the executor (or join its cluster) now; raises :class:`ExecutorError` if it
    cannot, so a caller can call this before it creates anything.

    For ``ray``, ``address`` is the cluster to join (``host:port`` of its head, as printed by
    ``ray start --head``; ``auto`` for the one started last on this machine; ``ray://...``
    for Ray Client). ``None`` means ``$RAY_ADDRESS`` if set, else a new private Ray instance
    on this machine with ``workers`` CPUs, even when another cluster runs here; ``local``
    always means a private instance. To join a cluster with token authentication this
    process needs the head's token (``ray get-auth-token`` on the head) in ``RAY_AUTH_TOKEN``,
    in a file named by ``RAY_AUTH_TOKEN_PATH`` or in ``~/.ray/auth_token``; if one is there,
    it is sent (``RAY_AUTH_MODE=token``) unless ``RAY_AUTH_MODE`` says otherwise.
    """
    if executor == "local":
        if address is not None:
            raise ExecutorError(f"a cluster address ({address}) is only for the ray executor")
        return Executor("local", workers)
    if executor != "ray":
        raise ValueError(f"unknown executor {executor!r}; use 'local' or 'ray'")
    try:
        import ray
    except ImportError:
        raise ExecutorError("the Ray executor needs ray: pip install 'nvmsim[ray]'") from None
    if address is None:
        address = os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        address = address.strip() or None
    if ray.is_initialized():  # this process is already a Ray driver: use its cluster
        return Executor("ray", workers, address)
    if address is None or address == "local":
        ex = Executor("ray", workers)
        _start_private(ray, ex.workers)
    else:
        address = _join(ray, address)
        ex = Executor("ray", workers, address)
    ex._ray_started = True
    return ex


def execute(
    tasks: Iterable[Task],
    cache_dir: Path,
    executor: str | Executor,
    workers: int,
    *,
    address: str | None = None,
) -> Iterator[Result]:
    """Yield ``(task index, result, start, seconds)`` as tasks finish: on ``executor`` if it
    is a started :class:`Executor` (left open), else on one connected for these tasks alone
    (see :func:`connect`) and closed after them."""
    if isinstance(executor, Executor):
        yield from executor.execute(tasks, cache_dir)
        return
    with connect(executor, address, workers) as ex:
        yield from ex.execute(tasks, cache_dir)


def die_with_parent(parent: int, poll: float = 0.5) -> None:
    """Make this (worker) process exit once ``parent`` is gone, however it ended: a study
    killed with SIGTERM or SIGKILL must not leave workers computing for nobody."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


# --- Ray -----------------------------------------------------------------------------------


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


@contextlib.contextmanager
def _quiet(logger: str):
    """Silence one of Ray's loggers below ERROR meanwhile."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


@contextlib.contextmanager
def _environ(**values: str):
    """Set environment variables meanwhile."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _start_private(ray, workers: int) -> None:
    """A new Ray instance for this process alone (``address="local"``: never one already
    running here, which ``ray.init(num_cpus=...)`` would try to join, and refuse)."""
    _reread_ray_auth()
    try:
        with _quiet("ray._private.authentication.authentication_token_setup"):
            ray.init(
                address="local",
                num_cpus=workers,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
    except Exception as err:
        raise ExecutorError(f"cannot start a local Ray instance: {_first_line(err)}") from None


def _join(ray, address: str) -> str:
    """Connect this process to the Ray cluster at ``address``, failing in seconds with one
    line when it cannot; returns the address joined (``auto`` resolved)."""
    if address == "auto":
        address = _find_local_cluster()
    client = address.startswith("ray://")
    host, port = _host_port(address)
    _check_port(address, host, port)
    auth = _use_token(address)
    if not client:
        _probe_gcs(address, auth)
    # The probe has shown the head answers and accepts us; should it still fail, one attempt
    # (not Ray's default 20, 1 s apart) is enough to tell.
    try:
        with _environ(RAY_gcs_server_port_wait_time_s="2"):
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as err:
        raise ExecutorError(
            f"cannot join the Ray cluster at {address}: {_first_line(err)}"
        ) from None
    return address


def _find_local_cluster() -> str:
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die

        return canonicalize_bootstrap_address_or_die("auto")
    except ImportError:
        return "auto"  # let ray.init find it
    except Exception as err:
        raise ExecutorError(f"Ray address 'auto': {_first_line(err)}") from None


def _host_port(address: str) -> tuple[str, int]:
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")  # [IPv6]:port
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ExecutorError(
            f"Ray address {address!r} is not host:port (the head's, e.g. 10.0.0.5:6379)"
        )
    return host, int(port)


def _check_port(address: str, host: str, port: int) -> None:
    """Fail at once when nothing listens there (Ray itself retries for 20 s or more)."""
    try:
        socket.create_connection((host, port), timeout=TCP_TIMEOUT_S).close()
    except socket.gaierror:
        raise ExecutorError(f"cannot reach the Ray cluster at {address}: unknown host") from None
    except ConnectionRefusedError:
        raise ExecutorError(
            f"cannot reach the Ray cluster at {address}: connection refused (is `ray start "
            f"--head` running there, on port {port}?)"
        ) from None
    except TimeoutError:
        raise ExecutorError(
            f"cannot reach the Ray cluster at {address}: no answer within {TCP_TIMEOUT_S:g} s"
        ) from None
    except OSError as err:
        raise ExecutorError(
            f"cannot reach the Ray cluster at {address}: {err.strerror or err}"
        ) from None


def _token_source() -> str | None:
    """Where Ray would read an authentication token from (its order), or None."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        try:
            ok = bool(Path(path).read_text().strip())
        except OSError as err:
            raise ExecutorError(f"RAY_AUTH_TOKEN_PATH={path}: {err.strerror or err}") from None
        if not ok:
            raise ExecutorError(f"RAY_AUTH_TOKEN_PATH={path}: the token file is empty")
        return f"RAY_AUTH_TOKEN_PATH={path}"
    default = Path.home() / ".ray" / "auth_token"
    with contextlib.suppress(OSError):
        if default.read_text().strip():
            return str(default)
    return None


def _use_token(address: str) -> tuple[str | None, str]:
    """Send this machine's Ray token, if it has one: Ray sends it to an explicit address only
    with ``RAY_AUTH_MODE=token``, and a cluster without authentication ignores it. Returns
    where the token comes from (None: nowhere) and the auth mode now in force."""
    source = _token_source()
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is None and source is not None:
        os.environ["RAY_AUTH_MODE"] = mode = "token"
    mode = (mode or "disabled").lower()
    if mode == "token" and source is None:
        raise ExecutorError(
            f"cannot join the Ray cluster at {address}: RAY_AUTH_MODE=token but no token was "
            f"found: {_WHERE_TOKENS_GO}"
        )
    _reread_ray_auth()
    return source, mode


def _reread_ray_auth() -> None:
    """Ray caches its auth mode and token in the process, from the first ``ray.init``: read
    both afresh, or a second connection (another cluster, or a new private one whose
    processes read the token anew) would send a stale token."""
    with contextlib.suppress(Exception):
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")  # first: Ray's own order (its test utilities say why)
        AuthenticationTokenLoader.instance().reset_cache()


_PROBE = """
import sys
from ray._raylet import GcsClient
try:
    GcsClient(address=sys.argv[1]).cluster_id
except Exception as err:
    kind = "auth" if type(err).__name__ == "AuthenticationError" else "error"
    lines = [s.strip() for s in str(err).splitlines() if s.strip()] or [type(err).__name__]
    print("nvmsim-probe", kind, lines[0].split(". ")[0])
    sys.exit(1)
print("nvmsim-probe ok")
"""


def _probe_gcs(address: str, auth: tuple[str | None, str]) -> None:
    """Ask the head's GCS for the cluster id from a throw-away process, whose Ray logs and
    retries stay out of this one's output: tells a wrong port or a missing or wrong token in
    well under a second, where ``ray.init`` retries for 20 s and prints a traceback."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", _PROBE, address],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        ).stdout
    except subprocess.TimeoutExpired:
        raise ExecutorError(
            f"cannot join the Ray cluster at {address}: no Ray head answered within "
            f"{PROBE_TIMEOUT_S:g} s (is that the head's GCS port, 6379 by default, and not "
            "the dashboard's or Ray Client's?)"
        ) from None
    except OSError:
        return  # no probe: ray.init will tell
    verdict = next((line.split(" ", 2)[1:] for line in out.splitlines()
                    if line.startswith("nvmsim-probe ")), None)  # fmt: skip
    if verdict is None or verdict[0] == "ok":
        return  # ok, or the probe itself could not run (another Ray version): ray.init tells
    if verdict[0] == "auth":
        source, mode = auth
        if mode == "token":
            raise ExecutorError(
                f"the Ray cluster at {address} rejected the authentication token from "
                f"{source}: it needs the head's (`ray get-auth-token` there)"
            )
        if source is not None:
            raise ExecutorError(
                f"the Ray cluster at {address} requires an authentication token: "
                f"RAY_AUTH_MODE={mode} keeps the one in {source} from being sent; unset it"
            )
        raise ExecutorError(
            f"the Ray cluster at {address} requires an authentication token and none was "
            f"found: {_WHERE_TOKENS_GO}"
        )
    detail = verdict[1] if len(verdict) > 1 else "no answer"
    raise ExecutorError(f"cannot join the Ray cluster at {address}: {detail}")
