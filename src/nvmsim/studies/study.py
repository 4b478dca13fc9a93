"""Running a whole study: validate, skip what is stored, train, evaluate, store as it goes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from nvmsim.config import ConfigError
from nvmsim.studies.executors import execute
from nvmsim.studies.schema import StudySpec, load_study
from nvmsim.studies.store import Store
from nvmsim.studies.sweep import Run, expand


@dataclass
class Plan:
    spec: StudySpec
    runs: list[Run]
    store_path: Path
    quick: bool

    @property
    def study_key(self) -> str:
        return self.spec.name + (" [quick]" if self.quick else "")

    @property
    def cache_dir(self) -> Path:
        return self.store_path.parent / "models"


def default_store(spec: StudySpec) -> Path:
    return Path("nvmsim-results") / f"{spec.name}.sqlite"


def plan(path: str | Path, quick: bool = False, store: str | Path | None = None) -> Plan:
    """Load, validate and expand a study, and check its data exist; touches no store."""
    spec, _ = load_study(path)
    runs = expand(spec, quick)
    _check_datasets(runs, path)
    return Plan(spec, runs, Path(store) if store else default_store(spec), quick)


def _check_datasets(runs: list[Run], source: str | Path) -> None:
    """Fail early, naming the file to fetch, when a dataset is not available."""
    from nvmsim.data import DatasetError, load

    seen = set()
    for r in runs:
        d = r.config["data"]
        key = (d["dataset"], d.get("data_dir"))
        if key in seen:
            continue
        seen.add(key)
        try:
            load(d["dataset"], "test", d.get("data_dir"), subset=1)
        except DatasetError as err:
            raise ConfigError(f"{source}: data.dataset = {d['dataset']!r}: {err}") from None


def run_plan(
    p: Plan,
    executor: str = "local",
    workers: int = 1,
    progress: bool = True,
    on_result=None,
) -> dict[str, int]:
    """Execute every run not yet in the store; results are stored one by one as they finish."""
    with Store(p.store_path) as store:
        done = store.done_ids(p.study_key)
        todo = [r for r in p.runs if r.run_id not in done]
        counts = {"total": len(p.runs), "skipped": len(p.runs) - len(todo), "ran": 0, "failed": 0}
        errors: list[str] = []
        if not todo:
            counts["errors"] = []  # type: ignore[assignment]
            return counts
        keys = {}
        for r in todo:
            trains_in_software = r.config["scenario"].get("onchip") is None
            if r.config["source"]["arch"] and trains_in_software and r.train_key not in keys:
                keys[r.train_key] = r
        to_train = [
            ("train", r.config, k)
            for k, r in keys.items()
            if not (p.cache_dir / f"{k}.safetensors").is_file()
        ]
        bar = _Progress(progress, len(to_train) + len(todo))
        try:
            if to_train:
                bar.phase("training")
                for i, result, _, _ in execute(to_train, p.cache_dir, executor, workers):
                    if "error" in result:
                        errors.append(f"training {to_train[i][1]['model']}: {result['error']}")
                    bar.advance("model trained")
            bar.phase("evaluating")
            tasks = [("eval", r.config, r.train_key) for r in todo]
            for i, metrics, start, seconds in execute(tasks, p.cache_dir, executor, workers):
                r = todo[i]
                if "error" in metrics:
                    counts["failed"] += 1
                    errors.append(f"run {r.axes}: {metrics['error']}")
                    bar.advance("failed")
                    continue
                store.add(p.study_key, r.run_id, r.axes, r.config, metrics, start, seconds)
                counts["ran"] += 1
                last = ", ".join(f"{k}={v}" for k, v in r.axes.items())
                bar.advance(f"{last}: accuracy {100 * metrics['accuracy']:.2f} %")
                if on_result is not None:
                    on_result(r, metrics)
        finally:
            bar.stop()
    counts["errors"] = errors  # type: ignore[assignment]
    return counts


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
    if not p.store_path.is_file():
        return {"total": len(p.runs), "done": 0, "pending": len(p.runs)}
    with Store(p.store_path) as store:
        done = store.done_ids(p.study_key) & {r.run_id for r in p.runs}
    return {"total": len(p.runs), "done": len(done), "pending": len(p.runs) - len(done)}
