"""Measurements that calibrate the simulated platform (:mod:`faasopt.sim`) on this machine.

Two kinds, both with the real parts (``docs/sim.md`` records the figures and how they became
the defaults of :class:`faasopt.sim.SimSettings`):

- :func:`measure_nats`: a real ``nats-server`` on loopback and two nats-py clients: the round
  trip of a request and its reply for a small and a z-sized message, and the throughput of a
  stream of small and of z-sized messages into one subscriber (what the coordinator's gather
  sees: a fixed cost per message plus one per byte).
- :func:`measure_local_runs`: a few ``faasopt.run`` jobs on local worker processes: cold starts,
  and the part of each round that is neither the slowest worker's compute nor its x-steps.

Run ``python -m faasopt.calibration`` to print both as JSON.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from faasopt.nats_client import connect, disconnect
from faasopt.platforms.nats_server import NatsServer


@dataclass(frozen=True)
class NatsFigures:
    """Loopback NATS through the real server; seconds and bytes per second."""

    small_bytes: int
    large_bytes: int
    small_round_trip_seconds: float
    """Median request/reply of ``small_bytes`` each way."""
    large_round_trip_seconds: float
    """Median request/reply of ``large_bytes`` each way."""
    stream_messages_per_second: float
    """``large_bytes`` messages from one publisher received by one subscriber's callback."""
    stream_bytes_per_second: float
    small_stream_messages_per_second: float
    """The same for ``small_bytes`` messages."""

    @property
    def latency_seconds(self) -> float:
        """One-way latency of a small message: half its round trip."""
        return self.small_round_trip_seconds / 2

    @property
    def bandwidth_bytes_per_second(self) -> float:
        """Bytes per second a message's size adds, from the two round trips."""
        extra = self.large_round_trip_seconds - self.small_round_trip_seconds
        return 2 * (self.large_bytes - self.small_bytes) / extra if extra > 0 else math.inf

    @property
    def intake_bandwidth(self) -> float:
        """Bytes per second a subscriber takes in, from the two streams' time per message."""
        extra = 1 / self.stream_messages_per_second - 1 / self.small_stream_messages_per_second
        return (self.large_bytes - self.small_bytes) / extra if extra > 0 else math.inf

    @property
    def message_overhead_seconds(self) -> float:
        """A subscriber's fixed cost per message: a small one's time less its bytes'."""
        per_message = 1 / self.small_stream_messages_per_second
        return max(per_message - self.small_bytes / self.intake_bandwidth, 0.0)


async def _nats(url: str, small: int, large: int, trips: int, stream: int) -> NatsFigures:
    server_side = await connect(url, "calibration-replier")
    client = await connect(url, "calibration-requester")
    try:

        async def echo(msg) -> None:
            await msg.respond(msg.data)

        await server_side.subscribe("calibration.echo", cb=echo)
        await server_side.flush()

        async def round_trip(size: int) -> float:
            payload = bytes(size)
            times = []
            for _ in range(trips):
                started = time.perf_counter()
                await client.request("calibration.echo", payload, timeout=5.0)
                times.append(time.perf_counter() - started)
            return statistics.median(times)

        small_rtt = await round_trip(small)
        large_rtt = await round_trip(large)

        async def throughput(size: int) -> float:
            """Messages of ``size`` bytes per second into one subscriber's callback."""
            done = asyncio.get_running_loop().create_future()
            received = 0

            async def count(msg) -> None:
                nonlocal received
                received += 1
                if received == stream:
                    done.set_result(time.perf_counter())

            subscription = await server_side.subscribe(
                f"calibration.stream.{size}", cb=count, pending_bytes_limit=-1
            )
            await server_side.flush()
            payload = bytes(size)
            started = time.perf_counter()
            for _ in range(stream):
                await client.publish(f"calibration.stream.{size}", payload)
            await client.flush()
            seconds = await asyncio.wait_for(done, 60.0) - started
            await subscription.unsubscribe()
            return stream / seconds

        large_rate = await throughput(large)
        small_rate = await throughput(small)
    finally:
        await disconnect(client)
        await disconnect(server_side)
    return NatsFigures(
        small_bytes=small,
        large_bytes=large,
        small_round_trip_seconds=small_rtt,
        large_round_trip_seconds=large_rtt,
        stream_messages_per_second=large_rate,
        stream_bytes_per_second=large_rate * large,
        small_stream_messages_per_second=small_rate,
    )


def measure_nats(
    small: int = 256, large: int = 80_000, trips: int = 300, stream: int = 2000
) -> NatsFigures:
    """Round trips and stream throughput through a fresh loopback ``nats-server``.

    ``large`` defaults to a z of the paper's instance (d = 10 000 float64).
    """
    with NatsServer() as server:
        return asyncio.run(_nats(server.url, small, large, trips, stream))


@dataclass(frozen=True)
class LocalRunFigures:
    """What local runs measured; seconds."""

    workers: int
    cold_starts: tuple[float, ...]
    """Every worker's invoke-to-hello, all runs."""
    round_overheads: tuple[float, ...]
    """Per round: its wall time minus the slowest worker's compute (messages, reduce)."""
    round_seconds: tuple[float, ...]


def measure_local_runs(job: Any, workers: int, runs: int = 3) -> LocalRunFigures:
    """Run ``job`` (a TrainingJob or manifest path) ``runs`` times on ``workers`` processes."""
    import faasopt

    cold, overheads, rounds = [], [], []
    for _ in range(runs):
        report = faasopt.run(job, workers=workers, quiet_workers=True).report
        cold += [c["seconds"] for c in report["coldStarts"] if c["seconds"] is not None]
        previous = 0.0
        for entry in report["trace"]:
            seconds = entry["elapsedSeconds"] - previous
            previous = entry["elapsedSeconds"]
            slowest = max(t["compute"] for t in entry["perWorker"].values())
            rounds.append(seconds)
            overheads.append(seconds - slowest)
    return LocalRunFigures(workers, tuple(cold), tuple(overheads), tuple(rounds))


def lognormal_fit(samples: tuple[float, ...]) -> tuple[float, float]:
    """(median, sigma) of a lognormal fitted to positive ``samples`` by their logs' moments."""
    logs = [math.log(s) for s in samples if s > 0]
    sigma = statistics.stdev(logs) if len(logs) > 1 else 0.0
    return math.exp(statistics.fmean(logs)), sigma


def main() -> None:
    from faasopt.scaling import PAPER_ADMM
    from faasopt.spec import TrainingJob

    nats = measure_nats()
    out: dict[str, Any] = {
        "nats": {
            **asdict(nats),
            "latencySeconds": nats.latency_seconds,
            "bandwidthBytesPerSecond": nats.bandwidth_bytes_per_second,
            "messageOverheadSeconds": nats.message_overhead_seconds,
            "intakeBandwidth": nats.intake_bandwidth,
        }
    }
    job = TrainingJob.from_dict(
        {
            "apiVersion": "faasopt.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "calibration"},
            "spec": {
                "problem": {
                    "l1": 1.0,
                    "data": {
                        "synthetic": {
                            "samples": 60000,
                            "features": 2000,
                            "density": 0.005,
                            "seed": 7,
                        }
                    },
                },
                "algorithm": {"admm": PAPER_ADMM},
                "workers": {"count": 4, "blocks": 4},
            },
        }
    )
    for workers in (2, 4):
        figures = measure_local_runs(job, workers)
        median, sigma = lognormal_fit(figures.cold_starts)
        out[f"local{workers}"] = {
            "coldStartMedianSeconds": median,
            "coldStartSigma": sigma,
            "roundOverheadMedianSeconds": statistics.median(figures.round_overheads),
            "roundMedianSeconds": statistics.median(figures.round_seconds),
            **asdict(figures),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
