"""The ``faasopt`` command: a thin door onto the library.

Exit status: 0 converged, 1 bad manifest or data, 2 the job failed or did not converge,
128 + N when stopped by signal N (130 for Ctrl-C).
Data (the summary) goes to stdout, diagnostics and progress to stderr.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from faasopt.errors import DataError, FaasoptError, Interrupted, SpecError

EXIT_OK, EXIT_BAD_INPUT, EXIT_FAILED = 0, 1, 2

app = typer.Typer(
    help="Train models by distributed optimization on serverless functions.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
out_console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def _bad_input(exc: SpecError | DataError) -> typer.Exit:
    problems = exc.problems if isinstance(exc, SpecError) else [exc]
    prefix = f"{exc.source}: " if isinstance(exc, SpecError) and exc.source else ""
    for problem in problems:
        err_console.print(f"[red]error[/red]: {prefix}{problem}", markup=True, highlight=False)
    return typer.Exit(EXIT_BAD_INPUT)


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="A TrainingJob manifest (YAML).")],
) -> None:
    """Check a manifest and its data source; print every problem with its field path."""
    from faasopt.plan import plan_job
    from faasopt.spec import TrainingJob

    try:
        plan = plan_job(TrainingJob.from_yaml(file))
    except (SpecError, DataError) as exc:
        raise _bad_input(exc) from None
    out_console.print(
        f"{file}: valid ({plan.description}, "
        f"{plan.n_blocks} blocks on {plan.workers} {plan.platform} workers)",
        highlight=False,
    )


def _sim_model(value: str | None) -> str | None:
    """``--sim-model`` checked against :class:`faasopt.runner.SimModel` (imported when used)."""
    if value is None:
        return None
    from faasopt.runner import SimModel

    if value not in set(SimModel):
        raise typer.BadParameter(f"must be one of {', '.join(SimModel)}, got {value!r}")
    return value


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="A TrainingJob manifest (YAML).")],
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for report.json and solution.npy.", envvar="FAASOPT_OUT"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Workers to start (overrides spec.workers.count).", envvar="FAASOPT_WORKERS"
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(help="Live display; default: on when stderr is a terminal."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus /metrics on this port during the run."),
    ] = None,
    metrics_address: Annotated[
        str, typer.Option(help="Address the /metrics server listens on.")
    ] = "127.0.0.1",
    metrics_linger: Annotated[
        float, typer.Option(help="Seconds /metrics stays up after the run, for a last scrape.")
    ] = 0.0,
    plots: Annotated[bool, typer.Option(help="Write PNG plots and report.html into --out.")] = True,
    resume: Annotated[
        bool, typer.Option(help="Continue from the last checkpoint (same problem).")
    ] = False,
    checkpoint_store: Annotated[
        str | None,
        typer.Option(
            help="s3://bucket/prefix for checkpoints (default: JetStream in --out).",
            envvar="FAASOPT_CHECKPOINT_STORE",
        ),
    ] = None,
    sim_model: Annotated[
        str | None,
        typer.Option(
            help="What a `platform: sim` job models: lambda (default: AWS Lambda workers) "
            "or local (worker processes on this machine).",
            envvar="FAASOPT_SIM_MODEL",
            callback=_sim_model,
        ),
    ] = None,
) -> None:
    """Solve a TrainingJob locally: a nats-server, worker processes and a coordinator.

    With `workers.platform: sim` the job runs on the simulated platform in this process: the
    same iterates, report and plots, with times and dollars that are predictions.
    """
    from faasopt.runner import DEFAULT_SIM_MODEL
    from faasopt.runner import run as run_job

    if resume and out is None and checkpoint_store is None:
        raise typer.BadParameter(
            "needs --out or --checkpoint-store: where the checkpoints are", param_hint="--resume"
        )
    live = err_console.is_terminal if progress is None else progress
    display = _Progress(live)
    try:
        with display:
            result = run_job(
                file,
                workers=workers,
                out=out,
                on_start=display.start,
                on_round=display.round,
                metrics_port=metrics_port,
                metrics_address=metrics_address,
                metrics_linger_seconds=metrics_linger,
                resume=resume,
                checkpoint_store=checkpoint_store,
                sim_model=sim_model or DEFAULT_SIM_MODEL,
            )
    except (SpecError, DataError) as exc:
        raise _bad_input(exc) from None
    except FaasoptError as exc:
        err_console.print(f"[red]failed[/red]: {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    except Interrupted as exc:
        err_console.print("interrupted: workers and nats-server stopped")
        raise typer.Exit(128 + exc.signum) from None
    if result.report.get("predicted"):
        display.replay(result.report)
    if out is not None and plots:
        from faasopt.plots import write_plots

        write_plots(out, result.report)
    _summary(result.report, out)
    if result.report["error"]:
        err_console.print(f"[red]failed[/red]: {result.report['error']}", highlight=False)
    if not result.converged:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def report(
    folder: Annotated[Path, typer.Argument(help="A run's --out folder, with report.json.")],
) -> None:
    """Draw a run's report.json as PNG plots and one self-contained report.html, in FOLDER."""
    import json

    from faasopt.plots import write_plots
    from faasopt.report import REPORT_FILE

    source = folder / REPORT_FILE
    try:
        data = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        err_console.print(f"[red]error[/red]: {source}: {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    for path in write_plots(folder, data):
        out_console.print(str(path), highlight=False)


@app.command()
def crd() -> None:
    """Print the TrainingJob CustomResourceDefinition (YAML), generated from the spec."""
    from faasopt.crd import render_crd

    typer.echo(render_crd(), nl=False)


bench_app = typer.Typer(
    help="Benchmarks of a source checkout (bench/): print figures and ratios, write JSON.",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")


def _bench_script(name: str):
    """The module bench/<name>.py of the source checkout this faasopt runs from."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    if not path.is_file():
        err_console.print(
            f"[red]error[/red]: {path} not found: benchmarks run from a source checkout",
            highlight=False,
        )
        raise typer.Exit(EXIT_BAD_INPUT)
    if str(path.parent) not in sys.path:  # its sibling modules, as when run as a script
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"faasopt_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@bench_app.command("algorithms")
def bench_algorithms(
    quick: Annotated[
        bool, typer.Option(help="Problems 10x smaller, fewer configurations.")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="JSON results file (PNG beside it).")] = None,
    problems: Annotated[str, typer.Option(help="Comma-separated subset of the problems.")] = "",
) -> None:
    """Compare ADMM configurations: rounds, gradient work, bytes, time (bench/algorithms.py)."""
    argv = ["--quick"] * quick + ["--problems", problems] + (["--out", str(out)] if out else [])
    raise typer.Exit(_bench_script("algorithms").main(argv))


@bench_app.command("seeds")
def bench_seeds(
    quick: Annotated[bool, typer.Option(help="Small problems, coarse grids (~1-2 min).")] = False,
    repeat: Annotated[int, typer.Option(help="Distributed runs per configuration.")] = 1,
    out: Annotated[Path | None, typer.Option(help="JSON results file.")] = None,
) -> None:
    """The seeds' comparisons: ADMM vs MA-SGD vs GA-SGD on logistic regression (LambdaML, Fig. 7),
    ISP vs BSP on PMF (MLLess, Fig. 4) (bench/seeds_comparison.py)."""
    argv = ["--quick"] * quick + ["--repeat", str(repeat)] + (["--out", str(out)] if out else [])
    raise typer.Exit(_bench_script("seeds_comparison").main(argv))


@bench_app.command("scaling")
def bench_scaling(
    quick: Annotated[
        bool, typer.Option(help="A 10x smaller instance in 64 blocks, W up to 64, no variants.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="JSON results file, PNGs beside it (default: ./scaling[_quick].json)."),
    ] = None,
    local: Annotated[
        str | None,
        typer.Option(
            help="Worker counts run for real as local processes, e.g. 2,4 ('' for none; "
            "default: faasopt.scaling.LOCAL_COUNTS)."
        ),
    ] = None,
    variants: Annotated[
        bool, typer.Option(help="Also the runs with the model parameters that explain the gap.")
    ] = True,
) -> None:
    """The paper's scaling experiment (seed 001, Figs. 4, 5, 9) on sim (Lambda-like) and local:
    relative speedup and efficiency vs W = 4, idle vs compute, responsiveness."""
    import os

    from faasopt.payload import WORKER_ENV

    os.environ.update(WORKER_ENV)  # one BLAS thread, as the workers run (before numpy loads)
    from faasopt.scaling import bench_name
    from faasopt.scaling import bench_scaling as run_bench

    run_bench(
        out or Path(f"{bench_name(quick)}.json"),
        quick=quick,
        local_counts=None if local is None else [int(w) for w in local.split(",") if w],
        variants=variants,
        echo=typer.echo,
    )


class _Progress:
    """A live table on a terminal, one plain line per iteration otherwise (both on stderr)."""

    def __init__(self, live: bool) -> None:
        self.live = (
            Live(console=err_console, refresh_per_second=8, transient=True) if live else None
        )
        self.plan = None
        self.started = time.perf_counter()

    def __enter__(self) -> _Progress:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def start(self, plan) -> None:
        self.plan = plan
        self.started = time.perf_counter()
        starting = (
            "simulating on a virtual clock (figures are predictions)"
            if plan.platform == "sim"
            else "nats-server and workers starting"
        )
        message = (
            f"{plan.namespace}/{plan.name}: {plan.description}, {plan.n_blocks} blocks, "
            f"{plan.workers} {plan.platform} workers, {starting}"
        )
        if self.live is not None:
            self.live.update(message)
        else:
            err_console.print(message, highlight=False, soft_wrap=True)

    def line(self, entry: dict, elapsed: str) -> None:
        """One plain progress line from a trace entry."""
        err_console.print(
            f"iter {entry['iteration']:4d}  objective {entry['objective']:.6e}  "
            f"{self._figures(entry)}  workers {entry['workers']}  {elapsed}",
            highlight=False,
            soft_wrap=True,
        )

    def _figures(self, entry: dict) -> str:
        """The round's figures of its algorithm (ADMM: residuals against tolerances, rho)."""
        s = self.plan.settings
        if "primalResidual" in entry:
            return (
                f"r {entry['primalResidual']:.2e}/{s.primal_tolerance:.0e}  "
                f"s {entry['dualResidual']:.2e}/{s.dual_tolerance:.0e}  rho {entry['rho']:.3g}"
            )
        if "epochs" in entry:
            return f"epoch {entry['epochs']:.2f}  eta {entry['learningRate']:.3g}"
        return f"change {entry['change']:.2e}  empty {entry['emptyClusters']}"

    def replay(self, report: dict) -> None:
        """The lines of a simulated run, from its report, with predicted times."""
        for e in report["trace"]:
            self.line(e, f"{e['elapsedSeconds']:.2f}s predicted")

    def round(self, report) -> None:
        from faasopt.report import round_figures

        r = report.record
        entry = {
            "iteration": r.iteration,
            "objective": r.objective,
            "workers": len(report.timings),
            **round_figures(r),
        }
        elapsed = time.perf_counter() - self.started
        if self.live is None:
            self.line(entry, f"{elapsed:.1f}s")
            return
        table = Table(title=f"{self.plan.namespace}/{self.plan.name}", title_justify="left")
        for column in ("iteration", "objective", "figures", "workers", "elapsed"):
            table.add_column(column, justify="right")
        table.add_row(
            str(r.iteration + 1),
            f"{r.objective:.6e}",
            self._figures(entry),
            str(len(report.timings)),
            f"{elapsed:.1f} s",
        )
        self.live.update(table)


def _summary(report: dict, out: Path | None) -> None:
    from faasopt.report import summary_rows

    title = "faasopt run"
    if report.get("predicted"):
        title += f" (predicted by the sim, model {report['simulation']['model']})"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("")
    rows = summary_rows(report)
    if out is not None:
        rows.append(("report", str(out / "report.json")))
    for key, value in rows:
        table.add_row(key, value)
    out_console.print(table, highlight=False)


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
