"""Pictures of a run from its report.json: what seed 001 plots (Figs. 3, 5-9), as PNG and HTML.

Every plot is a function from the report to a matplotlib Figure (tests inspect the Figures);
:func:`write_plots` saves them as PNGs beside report.json with one self-contained report.html.
Figures are built without pyplot, so nothing global (backend, open figures) is touched.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from faasopt.report import SLOWEST_SHARE, summary_rows

Report = dict[str, Any]
HTML_FILE = "report.html"
KINDS = ("compute", "idle", "communication")


def _values(report: Report, key: str) -> list[float]:
    return [math.nan if e[key] is None else e[key] for e in report["trace"]]


def _iterations(report: Report) -> list[int]:
    return [e["iteration"] for e in report["trace"]]


def residuals(report: Report) -> Figure:
    """Primal and dual residuals per iteration, log scale, with their tolerances (Fig. 3)."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    k = _iterations(report)
    for key, name, color in (("primal", "r", "C0"), ("dual", "s", "C1")):
        positive = [v if v > 0 else math.nan for v in _values(report, f"{key}Residual")]
        ax.plot(k, positive, marker=".", color=color, label=f"{key} residual {name}")
        ax.axhline(report[f"{key}Tolerance"], color=color, linestyle="--", label=f"{key} tolerance")
    ax.set(
        yscale="log", xlabel="iteration", ylabel="residual", title="Residuals (seed 001, Fig. 3)"
    )
    ax.legend()
    return fig


def objective(report: Report) -> Figure:
    """The objective at z_k against solve time."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(_values(report, "elapsedSeconds"), _values(report, "objective"), marker=".")
    ax.set(xlabel="solve time (s)", ylabel="objective at z_k", title="Objective")
    return fig


def utilization(report: Report) -> Figure:
    """Mean compute, idle and communication seconds per iteration, stacked (Figs. 5, 7), and
    their distributions over all workers and rounds (Fig. 6), on log-spaced bins because one
    slow first round would squeeze the rest into one bin (zeros are left out there)."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    per_round, spread = fig.subplots(1, 2)
    k = _iterations(report)
    bottom = [0.0] * len(k)
    samples = {
        kind: [w[kind] for e in report["trace"] for w in e["perWorker"].values() if w[kind] > 0]
        for kind in KINDS
    }
    everything = [v for values in samples.values() for v in values] or [1e-3, 1.0]
    bins = np.geomspace(min(everything), max(everything) * 1.01, 30)
    for kind in KINDS:
        means = [
            sum(w[kind] for w in e["perWorker"].values()) / max(len(e["perWorker"]), 1)
            for e in report["trace"]
        ]
        per_round.bar(k, means, bottom=bottom, label=kind, width=0.9)
        bottom = [b + m for b, m in zip(bottom, means, strict=True)]
        spread.hist(samples[kind], bins=bins, histtype="step", label=kind)
    per_round.set(xlabel="iteration", ylabel="seconds (mean over workers)")
    per_round.set_title("Utilization per iteration (Figs. 5, 7)")
    per_round.legend()
    spread.set(xlabel="seconds per worker and round", ylabel="count", xscale="log")
    spread.set_title("Distributions (Fig. 6)")
    spread.legend()
    return fig


def cold_starts(report: Report) -> Figure:
    """Each worker's cold start, with the part spent loading its blocks (Fig. 8)."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    starts = report["coldStarts"]
    names = [s["worker"] for s in starts]
    ax.bar(names, [s["seconds"] or 0.0 for s in starts], label="cold start")
    ax.bar(names, [s["loadSeconds"] or 0.0 for s in starts], width=0.4, label="loading blocks")
    ax.set(xlabel="worker", ylabel="seconds", title="Cold starts (Fig. 8)")
    ax.margins(y=0.3)  # room for the legend above the bars
    ax.legend(loc="upper right")
    return fig


def responsiveness(report: Report) -> Figure:
    """The fraction of rounds each worker was among the slowest 10 %, and its histogram (Fig. 9).

    The dashed line is the fraction every worker would have if lateness were spread evenly.
    """
    fig = Figure(figsize=(11, 4), layout="constrained")
    bars, spread = fig.subplots(1, 2)
    fractions = report["responsiveness"]
    bars.bar(list(fractions), list(fractions.values()))
    active = report["workers"]
    bars.axhline(math.ceil(SLOWEST_SHARE * active) / active, color="k", linestyle="--")
    bars.set(xlabel="worker", ylabel="fraction of rounds", ylim=(0, 1))
    bars.set_title("Among the slowest 10 %")
    spread.hist(list(fractions.values()), bins=[i / 10 for i in range(11)], edgecolor="white")
    spread.set(xlabel="fraction of rounds among the slowest 10 %", ylabel="workers")
    spread.yaxis.set_major_locator(MaxNLocator(integer=True))
    spread.set_title("Responsiveness (Fig. 9)")
    return fig


def workers(report: Report) -> Figure:
    """Active workers (the rounds whose scale-in decision evicted marked: the pool drops a round
    or two later, once it is carried out) and the cost so far, against solve time."""
    fig = Figure(figsize=(7, 6), layout="constrained")
    pool, spent = fig.subplots(2, 1, sharex=True)
    elapsed = _values(report, "elapsedSeconds")
    pool.step(elapsed, _values(report, "workers"), where="post")
    for entry in report["trace"]:
        decision = entry.get("scaleIn") or {}
        if decision.get("retired", decision.get("action") == "evict"):  # older reports: named
            pool.axvline(entry["elapsedSeconds"], color="tab:red", linestyle=":", linewidth=1)
    pool.set(ylabel="active workers", title="Workers and cost", ylim=(0, None))
    pool.yaxis.set_major_locator(MaxNLocator(integer=True))
    spent.plot(elapsed, _values(report, "costDollars"), marker=".")
    spent.set(xlabel="solve time (s)", ylabel="dollars so far", ylim=(0, None))
    return fig


PLOTS: dict[str, Callable[[Report], Figure]] = {
    "residuals": residuals,
    "objective": objective,
    "utilization": utilization,
    "cold-starts": cold_starts,
    "responsiveness": responsiveness,
    "workers": workers,
}


def write_plots(out: Path, report: Report) -> list[Path]:
    """Write one PNG per plot and report.html (images inlined) into ``out``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, plot in PLOTS.items():
        if name == "residuals" and "primalTolerance" not in report:  # ADMM's alone
            continue
        path = out / f"{name}.png"
        plot(report).savefig(path, format="png", dpi=100)
        paths.append(path)
    page = out / HTML_FILE
    page.write_text(render_html(report, {p.stem: p.read_bytes() for p in paths}))
    return [*paths, page]


def render_html(report: Report, images: dict[str, bytes]) -> str:
    """One HTML page with the summary table and the PNGs inlined as base64 (no other files)."""
    job = html.escape(f"{report['job']['namespace']}/{report['job']['name']}")
    rows = "\n".join(
        f"<tr><th>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>"
        for key, value in summary_rows(report)
    )
    figures = "\n".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"></figure>'
        for name, png in images.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>faasopt run {job}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
th, td {{ text-align: left; padding: 0.2em 1em; border-bottom: 1px solid #ddd; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; }}
img {{ max-width: 100%; }}
</style></head>
<body><h1>faasopt run {job}</h1>
<table>
{rows}
</table>
{figures}
</body></html>
"""
