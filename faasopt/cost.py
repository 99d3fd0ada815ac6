"""The cost model: what a job's workers and always-on machines cost, in US dollars.

One price table (:data:`PRICES`) is the single source of truth; ``docs/costs.md`` copies it with
the formulas. A worker is billed for its memory over its lifetime (GB-s, the billed duration
rounded up to the platform's granularity) plus a fee per invocation; the coordinator and the NATS
server are always-on machines billed for the whole job. Pods, Knative, OpenFaaS and local
workers are billed as a share of a cluster node: their memory's share of the node's hourly price.

Memory is converted as AWS does: 1 GB = 1024 MB (a 2048 MB worker is 2 GB).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

MB_PER_GB = 1024
SECONDS_PER_HOUR = 3600.0

M5_LARGE_DOLLARS_PER_HOUR = 0.096
"""AWS EC2 m5.large (2 vCPU, 8 GiB), on demand, Linux, us-east-1: the node that prices pods."""
M5_LARGE_GB = 8
NODE_GB_SECOND = M5_LARGE_DOLLARS_PER_HOUR / M5_LARGE_GB / SECONDS_PER_HOUR
"""One GB of an m5.large for one second: 3.333e-6 $/GB-s (a fifth of Lambda's price)."""


@dataclass(frozen=True)
class Price:
    """The prices of one platform; every figure in US dollars."""

    platform: str
    gb_second: float
    """Per GB of worker memory per billed second."""
    request: float
    """Per invocation of a worker."""
    granularity_seconds: float
    """A worker's billed duration is its lifetime rounded up to a multiple of this; 0: exact."""
    always_on_per_hour: float
    """The coordinator's and the NATS server's machines together, billed for the whole job."""
    source: str
    as_of: str


_AWS_LAMBDA = "https://aws.amazon.com/lambda/pricing/ (x86, us-east-1, first tier)"
_EC2 = "https://aws.amazon.com/ec2/pricing/on-demand/ (m5.large, Linux, us-east-1)"
_MLLESS = "seed 002 (MLLess), Table 2: IBM Cloud, us-east"
_NODE_SHARE = dict(
    gb_second=NODE_GB_SECOND,
    request=0.0,
    granularity_seconds=0.0,
    always_on_per_hour=2 * M5_LARGE_DOLLARS_PER_HOUR,
    source=f"{_EC2}: memory share of a node; coordinator and NATS on one m5.large each",
    as_of="2026-11",
)

PRICES: Mapping[str, Price] = MappingProxyType(
    {
        "lambda": Price(
            platform="lambda",
            gb_second=0.0000166667,
            request=0.20 / 1e6,
            granularity_seconds=0.001,
            always_on_per_hour=2 * M5_LARGE_DOLLARS_PER_HOUR,
            source=f"{_AWS_LAMBDA}; coordinator and NATS on one m5.large each ({_EC2})",
            as_of="2026-11",
        ),
        "ibm": Price(
            platform="ibm",
            gb_second=0.000017,
            request=0.0,
            granularity_seconds=0.0,
            always_on_per_hour=0.15 + 0.17,
            source=f"{_MLLESS}: functions at 2 GB; C1.4x4 messaging 0.15 $/h, M1.2x16 Redis "
            "0.17 $/h (billed per second, as the paper does)",
            as_of="2021-04",
        ),
        **{name: Price(platform=name, **_NODE_SHARE) for name in ("pods", "knative", "openfaas")},
        "local": Price(platform="local", **_NODE_SHARE),
    }
)
"""Prices by platform name. ``sim`` is priced as the platform it models (:func:`price_of`)."""

_ALIASES = {"aws_lambda": "lambda"}


def price_of(platform: str, models: str = "lambda") -> Price:
    """The prices of ``platform``; ``sim`` takes those of the platform it ``models``."""
    name = models if platform == "sim" else platform
    try:
        return PRICES[_ALIASES.get(name, name)]
    except KeyError:
        known = ", ".join(sorted(PRICES))
        raise ValueError(f"no prices for platform {name!r}; known: {known}") from None


def billed_seconds(seconds: float, granularity: float) -> float:
    """``seconds`` rounded up to a multiple of ``granularity`` (0: not rounded).

    The division is rounded to 9 digits first, so 60 s at 1 ms bills 60 000 ms, not 60 001.
    """
    if granularity <= 0:
        return seconds
    return math.ceil(round(seconds / granularity, 9)) * granularity


def worker_dollars(price: Price, memory_mb: float, seconds: float, invocations: int = 1) -> float:
    """One worker alive ``seconds`` (summed over its ``invocations``) with ``memory_mb``.

    ``gb_second * memory_mb / 1024 * billed(seconds) + request * invocations``. The rounding is
    applied to the total lifetime, so pass one invocation at a time when each is billed apart.
    """
    gb = memory_mb / MB_PER_GB
    billed = billed_seconds(seconds, price.granularity_seconds)
    return price.gb_second * gb * billed + price.request * invocations


def always_on_dollars(price: Price, seconds: float) -> float:
    """The coordinator's and NATS's machines over a job of ``seconds``."""
    return price.always_on_per_hour / SECONDS_PER_HOUR * seconds


@dataclass(frozen=True)
class Rates:
    """What a pool costs per second of wall time: ``fixed + per_worker * workers``.

    Invocation fees are left out: they are paid once per worker, not per second.
    """

    fixed: float
    """$/s of the always-on machines."""
    per_worker: float
    """$/s of one worker's memory."""

    def at(self, workers: int) -> float:
        """$/s of a pool of ``workers``."""
        return self.fixed + self.per_worker * workers


def rates(price: Price, memory_mb: float) -> Rates:
    """The cost rates of pools of ``memory_mb`` workers on ``price``'s platform."""
    return Rates(
        fixed=price.always_on_per_hour / SECONDS_PER_HOUR,
        per_worker=price.gb_second * memory_mb / MB_PER_GB,
    )


@dataclass(frozen=True)
class JobCost:
    """A job's bill: every worker, the always-on machines, the total."""

    workers: Mapping[str, float]
    """Dollars by worker name."""
    always_on: float
    seconds: float
    """The job's wall time, which the always-on machines were billed for."""

    @property
    def total(self) -> float:
        return sum(self.workers.values()) + self.always_on

    @property
    def perf_per_dollar(self) -> float:
        """1 / (seconds x dollars), seed 002 Sec. 6.2."""
        return perf_per_dollar(self.seconds, self.total)

    def to_dict(self) -> dict[str, Any]:
        """The report's cost fields (camelCase, the report's contract)."""
        return {
            "costDollars": self.total,
            "dollarsPerWorker": dict(sorted(self.workers.items())),
            "alwaysOnDollars": self.always_on,
            "perfPerDollar": self.perf_per_dollar,
        }


def job_cost(
    price: Price,
    memory_mb: float,
    lifetimes: Mapping[str, float],
    seconds: float,
    invocations: Mapping[str, int] | None = None,
) -> JobCost:
    """The bill of a job of wall time ``seconds`` whose workers lived ``lifetimes`` (by name).

    ``invocations`` counts each worker's invocations (1 when absent); a worker re-invoked
    before its time limit pays the fee again.
    """
    calls = invocations or {}
    return JobCost(
        workers={
            name: worker_dollars(price, memory_mb, alive, calls.get(name, 1))
            for name, alive in lifetimes.items()
        },
        always_on=always_on_dollars(price, seconds),
        seconds=seconds,
    )


def perf_per_dollar(seconds: float, dollars: float) -> float:
    """MLLess's Perf/$ = 1 / (execution seconds x dollars); higher is better, inf if free."""
    product = seconds * dollars
    return 1.0 / product if product > 0 else math.inf
