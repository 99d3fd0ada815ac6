"""Plots and report.html from a real run: written by ``faasopt run`` and ``faasopt report``,
checked through their matplotlib Figures, and report.html rendered by headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from faasopt import plots
from faasopt.cli import app

JOB = {"spec": {"workers": {"count": 3}, "algorithm": {"admm": {"maxIterations": 12}}}}
PNGS = [f"{name}.png" for name in plots.PLOTS]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """``faasopt run --out DIR`` of a real 3-worker job: DIR and its report."""
    import yaml
    from conftest import BASE_MANIFEST, merge

    folder = tmp_path_factory.mktemp("run")
    manifest = folder / "job.yaml"
    manifest.write_text(yaml.safe_dump(merge(BASE_MANIFEST, JOB)))
    out = folder / "out"
    result = CliRunner().invoke(app, ["run", str(manifest), "--out", str(out), "--no-progress"])
    assert result.exit_code in (0, 2), result.output
    return out, json.loads((out / "report.json").read_text())


def test_run_writes_every_plot_and_the_page(run_dir):
    out, _ = run_dir
    for name in PNGS:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width >= 600, name
        assert (out / name).stat().st_size > 10_000, name  # an empty axes: 8 KB
    page = (out / plots.HTML_FILE).read_text()
    assert page.count("data:image/png;base64,") == len(PNGS)
    assert "<th>iterations</th>" in page and 'src="http' not in page  # self-contained


def test_no_plots_writes_only_the_report(tmp_path, manifest):
    out = tmp_path / "out"
    args = ["run", str(manifest(JOB)), "--out", str(out), "--no-plots", "--no-progress"]
    assert CliRunner().invoke(app, args).exit_code in (0, 2)
    assert (out / "report.json").exists()
    assert not [p for p in out.iterdir() if p.suffix in (".png", ".html")]


def test_report_command_redraws_from_report_json(run_dir, tmp_path):
    shutil.copy(run_dir[0] / "report.json", tmp_path / "report.json")
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*PNGS, plots.HTML_FILE, "report.json"]
    )
    assert CliRunner().invoke(app, ["report", str(tmp_path / "missing")]).exit_code == 1


def test_residuals_are_log_scaled_with_tolerance_lines(run_dir):
    _, report = run_dir
    (ax,) = plots.residuals(report).axes
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_yscale()) == ("iteration", "residual", "log")
    traces, tolerances = ax.lines[::2], ax.lines[1::2]
    assert len(ax.lines) == 4
    primal = [e["primalResidual"] for e in report["trace"]]
    assert primal[0] == 0  # r at z_0 = x_0 = 0: left out of the log scale, not drawn at -inf
    np.testing.assert_array_equal(traces[0].get_ydata(), [np.nan, *primal[1:]])
    assert [line.get_ydata()[0] for line in tolerances] == [
        report["primalTolerance"],
        report["dualTolerance"],
    ]


def test_objective_and_workers_against_time(run_dir):
    _, report = run_dir
    (ax,) = plots.objective(report).axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("solve time (s)", "objective at z_k")
    (line,) = ax.lines
    assert list(line.get_ydata()) == [e["objective"] for e in report["trace"]]
    pool, spent = plots.workers(report).axes
    assert pool.get_ylabel() == "active workers"
    assert set(pool.lines[0].get_ydata()) == {3}
    assert (spent.get_xlabel(), spent.get_ylabel()) == ("solve time (s)", "dollars so far")
    assert list(spent.lines[0].get_ydata()) == [e["costDollars"] for e in report["trace"]]


def test_utilization_stacks_the_mean_times_per_iteration(run_dir):
    _, report = run_dir
    per_round, spread = plots.utilization(report).axes
    assert per_round.get_xlabel() == "iteration"
    assert [c.get_label() for c in per_round.containers] == list(plots.KINDS)
    tops = [
        bar.get_y() + bar.get_height() for bar in per_round.containers[-1].patches
    ]  # the top of each stack: the mean round time of a worker
    expected = [sum(sum(w.values()) for w in e["perWorker"].values()) / 3 for e in report["trace"]]
    np.testing.assert_allclose(tops, expected, rtol=1e-12)
    assert spread.get_xlabel() == "seconds per worker and round"
    assert len(spread.patches) == 3  # one step histogram per kind


def test_cold_starts_and_responsiveness_show_every_worker(run_dir):
    _, report = run_dir
    (ax,) = plots.cold_starts(report).axes
    heights = [bar.get_height() for bar in ax.containers[0].patches]
    assert heights == [c["seconds"] for c in report["coldStarts"]]
    assert ax.get_ylabel() == "seconds"
    bars, spread = plots.responsiveness(report).axes
    fractions = report["responsiveness"]
    assert [bar.get_height() for bar in bars.containers[0].patches] == list(fractions.values())
    assert bars.get_ylabel() == "fraction of rounds"
    assert sum(patch.get_height() for patch in spread.patches) == len(fractions)


def test_headless_chromium_renders_the_page(run_dir, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not found: ./dev test installs Debian's chromium package")
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={screenshot}",
            "--window-size=1280,3000",
            (run_dir[0] / plots.HTML_FILE).as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    with Image.open(screenshot) as image:
        assert image.size == (1280, 3000)
        colors = image.convert("L").getextrema()
    assert colors[0] < 64 and colors[1] > 192  # text and plots on a light page, not blank
