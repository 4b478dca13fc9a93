"""Running a whole study: validate, skip what is stored, train, evaluate, store as it goes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from nvmsim.studies.checks import check_datasets, check_models, check_noise
from nvmsim.studies.executors import connect
from nvmsim.studies.lease import Lease
from nvmsim.studies.scenarios import scenario_for
from nvmsim.studies.schema import StudySpec, load_study
from nvmsim.studies.store import NoStoreYet, Store, metrics_problem, non_finite
from nvmsim.studies.sweep import Run, expand


@dataclass
class Plan:
    spec: StudySpec
    runs: list[Run]
    store_path: Path
    quick: bool
    source: Path

    @property
    def study_key(self) -> str:
        return self.spec.name + (" [quick]" if self.quick else "")

    @property
    def cache_dir(self) -> Path:
        return self.store_path.parent / "models"


def default_store(spec: StudySpec) -> Path:
    return Path("nvmsim-results") / f"{spec.name}.sqlite"


def plan(
    path: str | Path, quick: bool = False, store: str | Path | None = None, check_data: bool = True
) -> Plan:
    """Load, validate and expand a study; build each model once and check that it fits its
    dataset; with ``check_data``, also that the data exist. Touches no store."""
    spec, _ = load_study(path)
    runs = expand(spec, quick, source=str(path))
    check_noise(runs, path)
    check_models(runs, path)
    if check_data:
        check_datasets(runs, path)
    return Plan(spec, runs, Path(store) if store else default_store(spec), quick, Path(path))


def run_plan(
    p: Plan,
    executor: str = "local",
    workers: int = 1,
    progress: bool = True,
    on_result=None,
    address: str | None = None,
) -> dict[str, int]:
    """Execute every run not yet in the store; results are stored one by one as they finish.

    Runs are claimed one at a time just before they are computed, so several processes on
    one store split the work; runs that another live process holds are waited for, and taken
    over if that process dies (its lease expires).
    """
    if status(p)["pending"] == 0:  # nothing to do: no executor to start
        return {"total": len(p.runs), "skipped": len(p.runs), "ran": 0, "failed": 0,
                "others": 0, "errors": []}  # fmt: skip
    connection = connect(executor, address, workers)  # before the store: a failed start leaves none
    with connection, Store(p.store_path) as store, Lease(p.store_path) as lease:
        done = store.done_ids(p.study_key)
        todo = [r for r in p.runs if r.run_id not in done]
        counts = {"total": len(p.runs), "skipped": len(p.runs) - len(todo), "ran": 0, "failed": 0}
        errors: list[str] = []
        if not todo:
            counts["others"] = 0
            counts["errors"] = []  # type: ignore[assignment]
            return counts
        bar = _Progress(progress, len(todo))
        try:
            _train_missing(p, todo, connection, bar, errors)
            bar.phase("evaluating")
            attempted: set[str] = set()
            while True:
                claimed: list[Run] = []
                tasks = _claimed_tasks(p, todo, store, lease, attempted, claimed)
                for i, metrics, start, seconds in connection.execute(tasks, p.cache_dir):
                    r = claimed[i]
                    problem = metrics.get("error") or non_finite(metrics) or _unstorable(metrics)
                    if problem:
                        store.release(lease.owner, p.study_key, r.run_id)
                        counts["failed"] += 1
                        errors.append(f"{p.source}: run {r.run_id} {r.axes}: {problem}")
                        bar.advance("failed")
                        continue
                    store.add(p.study_key, r.run_id, r.axes, r.config, metrics, start, seconds)
                    counts["ran"] += 1
                    last = ", ".join(f"{k}={v}" for k, v in r.axes.items())
                    bar.advance(f"{last}: accuracy {100 * metrics['accuracy']:.2f} %")
                    if on_result is not None:
                        on_result(r, metrics)
                waiting = {r.run_id for r in todo} - attempted - store.done_ids(p.study_key)
                if not waiting:
                    break
                if waiting <= store.claimed_by_others(p.study_key, lease.owner):
                    bar.phase("waiting for another process")
                    time.sleep(min(2.0, lease.ttl / 4))
        finally:
            bar.stop()
        counts["others"] = (
            len({r.run_id for r in todo} & store.done_ids(p.study_key)) - counts["ran"]
        )
    counts["errors"] = errors  # type: ignore[assignment]
    return counts


def _claimed_tasks(p: Plan, todo, store: Store, lease: Lease, attempted: set, claimed: list):
    """Evaluation tasks of the runs this process can claim now, claimed as they are taken."""
    for r in todo:
        if r.run_id in attempted or not store.claim(p.study_key, r.run_id, lease.owner, lease.ttl):
            continue
        attempted.add(r.run_id)
        claimed.append(r)
        yield ("eval", r.config, r.train_key)


def _train_missing(p: Plan, todo: list[Run], connection, bar, errors: list[str]) -> None:
    """Train (and cache) each model the pending runs need that is not cached yet."""
    keys = {}
    for r in todo:
        trains_in_software = scenario_for(r.spec.scenario).trains_in_software
        if r.spec.source.arch and trains_in_software and r.train_key not in keys:
            keys[r.train_key] = r
    to_train = [
        ("train", r.config, k)
        for k, r in keys.items()
        if not (p.cache_dir / f"{k}.safetensors").is_file()
    ]
    if not to_train:
        return
    bar.add(len(to_train))
    bar.phase("training")
    for i, result, _, _ in connection.execute(to_train, p.cache_dir):
        if "error" in result:
            errors.append(f"{p.source}: training {to_train[i][1]['model']}: {result['error']}")
        bar.advance("model trained")


class _Progress:
    """A rich progress bar (runs done, ETA, last result), or nothing in quiet mode."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.bar = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[last]}"),
            )  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task("starting", total=total, last="")
        self.t0 = time.perf_counter()

    def add(self, n: int) -> None:
        if self.bar:
            self.bar.update(self.task, total=self.bar.tasks[0].total + n)

    def phase(self, name: str) -> None:
        if self.bar:
            self.bar.update(self.task, description=name)

    def advance(self, last: str) -> None:
        if self.bar:
            self.bar.update(self.task, advance=1, last=last)

    def stop(self) -> None:
        if self.bar:
            self.bar.stop()


def status(p: Plan) -> dict[str, int]:
    """Done and pending runs, from the store alone (read-only; no data needed)."""
    try:
        store = Store(p.store_path, readonly=True)
    except NoStoreYet:  # none yet, or another process is creating it this moment
        return {"total": len(p.runs), "done": 0, "pending": len(p.runs)}
    with store:
        done = store.done_ids(p.study_key) & {r.run_id for r in p.runs}
    return {"total": len(p.runs), "done": len(done), "pending": len(p.runs) - len(done)}


def _unstorable(metrics: dict) -> str | None:
    """Why a scenario's result could not be read back from the store (a failed run), or
    ``None``: every metric a finite number in its range, ``accuracy`` among them."""
    if "accuracy" not in metrics:
        return "the scenario returned no 'accuracy'"
    return metrics_problem(metrics)
