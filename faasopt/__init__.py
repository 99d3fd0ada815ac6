"""faasopt: distributed optimization on serverless functions.

``faasopt.run(...)`` solves a TrainingJob locally; ``faasopt.TrainingJob`` reads and validates a
manifest. Names load lazily so that a worker process imports only what it uses.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__all__ = ["FaasoptError", "Result", "TrainingJob", "run"]
__version__ = "0.1.0"

_HOMES = {
    "run": "faasopt.runner",
    "Result": "faasopt.runner",
    "TrainingJob": "faasopt.spec",
    "FaasoptError": "faasopt.errors",
}

if TYPE_CHECKING:
    from faasopt.errors import FaasoptError
    from faasopt.runner import Result, run
    from faasopt.spec import TrainingJob


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'faasopt' has no attribute {name!r}")
