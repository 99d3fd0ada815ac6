"""Every example manifest runs as it is and converges."""

from __future__ import annotations

from pathlib import Path

import pytest

import faasopt

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert {p.name for p in EXAMPLES} >= {"quickstart.yaml", "libsvm.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_converges(path, tmp_path):
    result = faasopt.run(path, out=tmp_path, quiet_workers=True)
    assert result.converged, result.report["status"]
    assert (tmp_path / "report.json").exists() and (tmp_path / "solution.npy").exists()
    assert result.report["nonzeros"] > 0
