"""The ``nvmsim`` command."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
err_console = Console(stderr=True, soft_wrap=True)
UsageError = typer.BadParameter.__mro__[1]  # click's, as typer vendors it
ClickException = UsageError.__mro__[1]


class _LineError(ClickException):
    """A usage error shown as one line (no usage box), exit 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        err_console.print(f"[bold red]error:[/] {escape(self.format_message())}", highlight=False)


class _OneLineUsage:
    """Bad commands, options and arguments are a one-line error, like every other error."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except UsageError as err:
            raise _LineError(f"{err.format_message()} (see {self._help_hint()})") from None

    def resolve_command(self, *args, **kwargs):
        try:
            return super().resolve_command(*args, **kwargs)
        except UsageError as err:
            raise _LineError(f"{err.format_message()} (see nvmsim --help)") from None

    def _help_hint(self) -> str:
        group = isinstance(self, typer.core.TyperGroup)
        return "nvmsim --help" if group else f"nvmsim {self.name} --help"


class _OneLineCommand(_OneLineUsage, typer.core.TyperCommand):
    pass


class _OneLineGroup(_OneLineUsage, typer.core.TyperGroup):
    pass


app = typer.Typer(
    help="Simulate neural networks on analog non-volatile-memory crossbars.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=_OneLineGroup,
)


def _fail(message: str) -> None:
    """One line on stderr, exit 2; user text is printed literally (no console markup)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(2)


def _say(text: str) -> None:
    """Print text that may hold user strings (``[quick]``, ``[models.x]``) literally."""
    console.print(text, markup=False, highlight=False)


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        where = err.filename if err.filename is not None else ""
        return f"{where}: {err.strerror}" if where else err.strerror
    text = "; ".join(line.strip() for line in str(err).strip().splitlines() if line.strip())
    return text or type(err).__name__


def command(*args, **kwargs):
    """``app.command`` whose errors (bad input, files, stores, executors) end in one line
    and exit 2, never a traceback."""
    import functools

    from nvmsim.studies.executors import ExecutorError

    def register(fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            try:
                return fn(*a, **kw)
            except typer.Exit:
                raise
            except (ValueError, OSError, ExecutorError) as err:
                if os.environ.get("NVMSIM_DEBUG"):  # the traceback, for a bug report
                    raise
                _fail(_one_line(err))

        return app.command(*args, cls=_OneLineCommand, **kwargs)(wrapper)

    return register


@command()
def demo(
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 40,
    repeats: Annotated[int, typer.Option(min=2, help="Device instances per setting.")] = 10,
    seed: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Train a small MLP on the embedded 8x8 digits and compare accuracy on analog devices."""
    from nvmsim.demo import TEST_IMAGES, accuracy_ci, run_demo

    with console.status("training a 64-64-10 MLP on scikit-learn's digits ..."):
        software, rows = run_demo(epochs=epochs, repeats=repeats, seed=seed)
    n = TEST_IMAGES
    table = Table(title=f"digits test split ({n} images), {repeats} device instances each")
    table.add_column("setting")
    table.add_column("accuracy %", justify="right")
    table.add_column("95 % CI", justify="right")
    table.add_column("std (devices)", justify="right")
    table.add_column("vs software", justify="right")

    def ci(acc: float) -> str:
        low, high = accuracy_ci(acc, n)
        return f"{100 * low:.1f} – {100 * high:.1f}"

    table.add_row("software (torch)", f"{100 * software:.2f}", ci(software), "", "")
    for r in rows:
        delta = 100 * (r.mean - software)
        cells = (f"{100 * r.mean:.2f}", ci(r.mean), f"{100 * r.std:.2f}", f"{delta:+.2f}")
        table.add_row(r.setting, *cells)
    console.print(table)
    low, high = accuracy_ci(software, n)
    console.print(
        f"The 95 % CI is the Wilson interval for {n} test images: differences inside it "
        f"(here about ±{50 * (high - low):.1f} points) are test-set sampling noise, so a noisy "
        "device that scores above software has not beaten it."
    )


@command()
def bench(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    quick: Annotated[bool, typer.Option(help="Fewer inputs and repeats.")] = False,
    irdrop: Annotated[bool, typer.Option(help="Also time the exact IR-drop solver.")] = True,
    onchip: Annotated[
        bool, typer.Option(help="Also time one epoch of on-chip training (paper 004).")
    ] = True,
    resnet: Annotated[
        bool, typer.Option(help="Also time CIFAR ResNet-18 (batch 64) and its programming.")
    ] = True,
    hwa: Annotated[
        bool, typer.Option(help="Also time one hardware-aware training epoch (f-MNIST CNN).")
    ] = True,
) -> None:
    """Time analog inference as a ratio to plain torch in the same run."""
    import torch

    from nvmsim.bench import run_inference_benchmarks, run_program_benchmarks, run_resnet_benchmarks

    n, repeats = (2_000, 5) if quick else (10_000, 15)
    rows = [r.as_dict() for r in run_inference_benchmarks(n=n, repeats=repeats)]
    prog_rows: list[dict] = []
    if resnet:
        # --quick: a narrow ResNet-18 (same 21 layers) on a small batch
        width, batch, rep = (16, 8, 2) if quick else (64, 64, 5)
        rows += [r.as_dict() for r in run_resnet_benchmarks(batch, rep, width)]
        prog_rows = [r.as_dict() for r in run_program_benchmarks(width, 1 if quick else 3)]
    ir_rows: list[dict] = []
    if irdrop:
        from nvmsim.crossbar.parasitics import benchmark_sizes

        ir_rows = benchmark_sizes(sizes=(64, 128, 256) if quick else (64, 128, 256, 512))
    oc_rows: list[dict] = []
    if onchip:
        from nvmsim.training.onchip_bench import run_onchip_benchmark, run_torch_sgd_epoch

        examples = 1000 if quick else 5000
        analog, plain = run_onchip_benchmark(examples), run_torch_sgd_epoch(examples)
        oc_rows.append({
            "case": "528-250-125-10, ideal linear devices, pulse update per example",
            "examples": examples, "seconds": analog, "baseline_seconds": plain,
            "ratio": analog / plain,
        })  # fmt: skip
    hwa_rows: list[dict] = []
    if hwa:
        from nvmsim.bench import run_hwa_benchmark

        n_hwa, rep = (2_000, 1) if quick else (60_000, 3)
        hwa_rows += [r.as_dict() for r in run_hwa_benchmark(n_hwa, rep)]
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "inputs": n}
    if as_json:
        out = {
            "meta": meta, "inference": rows, "program": prog_rows, "irdrop": ir_rows,
            "onchip": oc_rows, "hwa": hwa_rows,
        }  # fmt: skip
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    table = Table(
        title=f"analog inference vs plain torch ({n:,} inputs, {meta['threads']} threads)"
    )
    for col in ("model", "case", "analog ms", "torch ms", "ratio", "reads", "ratio/read",
                "inputs/s"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("model", "case") else "right")
    for r in rows:
        table.add_row(
            r["group"], r["case"], f"{1e3 * r['seconds']:.1f}",
            f"{1e3 * r['baseline_seconds']:.1f}", f"{r['ratio']:.2f}x", str(r["reads"]),
            f"{r['ratio_per_read']:.2f}x", f"{r['per_second']:,.0f}",
        )  # fmt: skip
    console.print(table)
    for r in prog_rows:
        console.print(
            f"convert {r['case']} ({r['weights']:,} weights): {r['seconds_min']:.2f} s min, "
            f"{r['seconds_median']:.2f} s median",
            highlight=False,
        )
    if ir_rows:
        t2 = Table(title="IR drop: exact effective matrix of one tile (float64)")
        for col in ir_rows[0]:
            t2.add_column(str(col), justify="right")
        for r in ir_rows:
            t2.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()))
        console.print(t2)
    for r in oc_rows:
        console.print(
            f"on-chip training, {r['case']}: one epoch of {r['examples']:,} examples in "
            f"{r['seconds']:.2f} s; plain torch SGD (batch 1, autograd) {r['baseline_seconds']:.2f}"
            f" s; ratio {r['ratio']:.2f}x (1 thread each)",
            highlight=False,
        )
    for r in hwa_rows:
        console.print(
            f"hardware-aware training, {r['case']}: one epoch of {r['examples']:,} images in "
            f"{r['seconds']:.2f} s; plain torch {r['baseline_seconds']:.2f} s; ratio "
            f"{r['ratio']:.2f}x",
            highlight=False,
        )


@command()
def devices(
    file: Annotated[
        list[Path] | None,
        typer.Option("--file", help="Also list a user preset file (TOML with a citation)."),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(help="Write one PNG per device (G vs time, noise std vs G) here."),
    ] = None,
    jumptable: Annotated[
        list[Path] | None,
        typer.Option(
            "--jumptable",
            help="Summarise (and with --plot, draw) a measured jump-table (.npz or .csv).",
        ),
    ] = None,
) -> None:
    """List the device presets with their parameters and sources."""
    from nvmsim.config import ConfigError, load_preset_file, preset
    from nvmsim.devices.presets import preset_names, summary

    devs = [preset(name) for name in preset_names()]
    for path in file or []:
        try:
            devs.append(load_preset_file(path))
        except ConfigError as err:
            _fail(_one_line(err))
    tables = []
    if jumptable:
        from nvmsim.devices.jumptable import JumpTableError, load_jumptable

        for path in jumptable:
            try:
                tables.append((path, load_jumptable(path)))
            except JumpTableError as err:
                _fail(_one_line(err))
    rows = [summary(d) for d in devs]
    listing = Table(title="device presets (conductances normalised to Gmax = 1)")
    listing.add_column("preset")
    for col in rows[0]:
        listing.add_column(col)
    for d, r in zip(devs, rows, strict=True):
        listing.add_row(d.name, *r.values())
    console.print(listing)
    for d in devs:
        console.print(
            f"[bold]{escape(d.name)}[/]: {escape(d.citation or '(no citation)')}", highlight=False
        )
    for path, jt in tables:
        mean, std = jt.mean_step(), jt.std_step()
        console.print(
            f"[bold]{escape(jt.name)}[/]: {escape(repr(jt))}; mean step {float(mean.min()):.3g} to "
            f"{float(mean.max()):.3g}, std {float(std.mean()):.3g} on average; "
            f"{jt.pulses_to_traverse():g} median pulses across the range",
            highlight=False,
        )
        if plot is not None:
            from nvmsim.training.onchip_plot import plot_jumptable

            console.print(
                f"figure written to {plot_jumptable(jt, plot / f'jumptable_{path.stem}.png')}"
            )
    if plot is None:
        return
    from nvmsim.devices.plot import plot_device

    for d in devs:
        out = plot_device(d, plot / f"device_{d.name}.png")
        _say(f"figure written to {out}")


@command("summary")
def summary_cmd(
    arch: Annotated[str, typer.Argument(help="A registered model (see `nvmsim models`).")],
    device: Annotated[str, typer.Option(help="Device preset of every analog layer.")] = "ideal",
    tile_rows: Annotated[int, typer.Option(min=1, help="Rows per physical array.")] = 256,
    tile_cols: Annotated[int, typer.Option(min=1, help="Columns per physical array.")] = 256,
) -> None:
    """Per layer of ARCH on crossbars: analog or digital, shape, arrays, devices, ADCs, MACs."""
    import warnings

    import torch

    from nvmsim.config import AnalogConfig, ConfigError, validate
    from nvmsim.models import INPUT_SHAPES, build
    from nvmsim.nn.convert import convert
    from nvmsim.nn.summary import summary

    try:
        model = build(arch).eval()
        cfg = validate(
            AnalogConfig,
            {"device": device, "crossbar": {"tile_rows": tile_rows, "tile_cols": tile_cols}},
        )
    except (ValueError, ConfigError) as err:
        _fail(_one_line(err))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        analog = convert(model, cfg)
    shape = INPUT_SHAPES.get(arch)
    example = None if shape is None else torch.zeros(1, *shape)
    s = summary(analog, example)
    table = Table(title=f"{arch} on {cfg.device.name} ({tile_rows}x{tile_cols} arrays)")
    head, *body = s.table()
    for i, col in enumerate(head):
        table.add_column(col, justify="right" if i >= 5 else "left")
    for row in body:
        table.add_row(*row)
    console.print(table)
    console.print(s.footer())
    for w in caught:
        _say(f"note: {w.message}")


@command()
def data(
    data_dir: Annotated[Path | None, typer.Option(help="Look here first.")] = None,
) -> None:
    """List the datasets found locally, with sizes and MD5 checks."""
    from nvmsim.data import describe_local

    table = Table(title="datasets")
    for col in ("dataset", "file", "bytes", "status", "path"):
        table.add_column(col)
    for r in describe_local(data_dir):
        size = f"{r['bytes']:,}" if r.get("bytes") is not None else ""
        table.add_row(r["dataset"], r["file"], size, r["status"], str(r.get("path") or ""))
    console.print(table)


@command()
def irdrop(
    rows: Annotated[int, typer.Option(min=1)] = 256,
    cols: Annotated[int, typer.Option(min=1)] = 256,
    r_wire: Annotated[float, typer.Option(min=0.0, help="Wire segment resistance (ohm).")] = 1.0,
    g_on: Annotated[float, typer.Option(min=0.0, help="Gmax (S).")] = 1e-4,
    on_off: Annotated[float, typer.Option(min=1.0)] = 10.0,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    figure: Annotated[Path | None, typer.Option(help="Save a PNG of the error by column.")] = None,
) -> None:
    """Exact IR drop of a random crossbar: error summary, timing, optional figure."""
    import time

    import numpy as np

    from nvmsim.crossbar.parasitics import effective_matrix

    if figure is not None and not figure.parent.is_dir():
        _fail(f"{figure}: --figure: folder {figure.parent} does not exist")
    rng = np.random.default_rng(seed)
    g = rng.uniform(g_on / on_off, g_on, size=(rows, cols))
    v = rng.uniform(0, 0.2, size=(1, rows))
    t0 = time.perf_counter()
    t = effective_matrix(g, r_wire, r_wire)
    elapsed = time.perf_counter() - t0
    ideal = (v @ g)[0]
    real = (v @ t)[0]
    rel = (real - ideal) / ideal
    console.print(
        f"{rows}x{cols} crossbar, r_wire = {r_wire} ohm, G in [{g_on / on_off:.3g}, {g_on:.3g}] S"
    )
    console.print(f"effective matrix solved exactly in {elapsed:.3f} s")
    console.print(
        f"relative column-current error: mean {rel.mean():+.3%}, worst {rel.min():+.3%} "
        f"(column {int(rel.argmin())}), best {rel.max():+.3%}"
    )
    if figure is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(100 * rel)
        ax.set_xlabel("column")
        ax.set_ylabel("current error vs ideal (%)")
        ax.set_title(f"IR drop, {rows}x{cols}, r = {r_wire} ohm")
        fig.tight_layout()
        fig.savefig(figure, dpi=120)
        _say(f"figure written to {figure}")


@command()
def energy(
    model: Annotated[str, typer.Argument(help="Registered model name (nvmsim models).")],
    device: Annotated[str, typer.Option(help="Technology: reram, sonos, pcm.")] = "reram",
    conv_mapping: Annotated[str, typer.Option(help="im2col, unrolled or toeplitz.")] = "im2col",
    t: Annotated[int | None, typer.Option(help="Time steps of mosaics_rnn.")] = None,
) -> None:
    """Energy per inference of a model, per layer: VMM (cells, DAC, ADC) and neurons."""
    from nvmsim.energy.report import energy_cli

    try:
        energy_cli(model, device=device, conv_mapping=conv_mapping, t=t, console=console)
    except ValueError as err:
        _fail(_one_line(err))


StudyPath = Annotated[Path, typer.Argument(help="Study file (TOML).")]
StoreOpt = Annotated[
    Path | None, typer.Option("--store", help="Result store (default nvmsim-results/NAME.sqlite).")
]
QuickOpt = Annotated[bool, typer.Option("--quick", help="Subsets, fewer epochs and repeats.")]


def _plan(study: Path, quick: bool, store: Path | None, check_data: bool = True):
    from nvmsim.studies.study import plan

    return plan(study, quick=quick, store=store, check_data=check_data)


@command()
def run(
    study: StudyPath,
    quick: QuickOpt = False,
    workers: Annotated[int, typer.Option(min=1, help="Parallel worker processes.")] = 1,
    executor: Annotated[str, typer.Option(help="local or ray.")] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join (host:port; default $RAY_ADDRESS, else a new one)."),
    ] = None,
    store: StoreOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run every pending run of a study; finished runs are skipped, results stored as they come.

    Several processes (or machines) on one store split the work: each claims runs as it goes.
    """
    from nvmsim.studies.study import run_plan

    if executor not in ("local", "ray"):
        _fail(f"--executor must be 'local' or 'ray', got {executor!r}")
    if address is not None and executor != "ray":
        _fail("--address is for --executor ray")
    p = _plan(study, quick, store)
    counts = run_plan(p, executor=executor, workers=workers, progress=not quiet, address=address)
    others = f", {counts['others']} by another process" if counts.get("others") else ""
    _say(
        f"{p.study_key}: {counts['ran']} runs done now, {counts['skipped']} already stored"
        f"{others}, {counts['total']} in all -> {p.store_path}"
    )
    if counts["errors"]:
        for message in counts["errors"]:
            err_console.print(f"[red]failed:[/] {escape(message)}", highlight=False)
        _fail(f"{counts['failed']} runs failed and were not stored; fix and run again")


@command()
def models() -> None:
    """List the model registry: kwargs, parameter counts and the datasets each one takes."""
    from nvmsim.models.catalog import catalog

    table = Table(title="models (`arch` in a study; kwargs under models.<label>.kwargs)")
    for col in ("arch", "kwargs", "parameters", "takes (dataset)", "what it is"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for e in catalog():
        params = "set by kwargs" if e.parameters is None else f"{e.parameters:,}"
        table.add_row(e.name, e.kwargs, params, "\n".join(e.fits) or "—", e.summary)
    console.print(table)


@command("status")
def status_cmd(study: StudyPath, quick: QuickOpt = False, store: StoreOpt = None) -> None:
    """How many runs of a study are done and pending (from the store alone)."""
    from nvmsim.studies.study import status

    p = _plan(study, quick, store, check_data=False)
    s = status(p)
    _say(f"{p.study_key}: {s['done']} done, {s['pending']} pending, {s['total']} in all")


@command()
def report(
    study: StudyPath,
    quick: QuickOpt = False,
    store: StoreOpt = None,
    out: Annotated[Path | None, typer.Option(help="Output folder.")] = None,
    export: Annotated[Path | None, typer.Option(help="Also export runs (.csv / .parquet).")] = None,
) -> None:
    """Write markdown tables, figures and a static HTML page from stored results (the store
    alone: no dataset is needed)."""
    from nvmsim.report.build import write_report
    from nvmsim.report.export import check_target
    from nvmsim.report.export import export as export_rows
    from nvmsim.studies.store import Store

    p = _plan(study, quick, store, check_data=False)
    folder = out or p.store_path.parent / (p.spec.name + ("-quick" if quick else ""))
    if folder.exists() and not folder.is_dir():
        _fail(f"{folder}: --out must be a folder, and this is a file")
    if export is not None and not export.parent.is_dir():
        _fail(f"{export}: --export: folder {export.parent} does not exist")
    if export is not None:
        try:
            check_target(export)  # before the report is written
        except ValueError as e:
            _fail(f"--export: {e}")
    if not p.store_path.exists():
        _fail(f"{p.store_path}: no results yet; run `nvmsim run {study}` first")
    with Store(p.store_path, readonly=True) as s:
        rows = s.rows(p.study_key, [r.run_id for r in p.runs])
        if not rows:
            other = _plan(study, not quick, store, check_data=False)
            hint = bool(s.rows(other.study_key, [r.run_id for r in other.runs]))
            flag = "without --quick" if quick else "with --quick"
            tip = f" (it holds runs of {other.study_key}: report {flag})" if hint else ""
            _fail(f"{p.store_path}: no stored runs of {p.study_key}{tip}")
    rep = p.spec.report
    paths = write_report(
        rows, folder, p.study_key, p.spec.description, rep.x, rep.panels, rep.log_x, rep.pool,
        store_path=p.store_path,
    )  # fmt: skip
    if export is not None:
        paths["export"] = export_rows(rows, export)
    missing = len(p.runs) - len(rows)
    for kind, path in paths.items():
        _say(f"{kind}: {path}")
    if missing:
        console.print(f"[yellow]{missing} runs are not done yet; the report shows {len(rows)}.[/]")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
