"""Child processes that never outlive faasopt."""

from __future__ import annotations

import ctypes
import resource
import signal
import subprocess
import time
from collections.abc import Iterable

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child before exec: get SIGKILL when the parent dies, even by SIGKILL (Linux).

    The signal follows the thread that forked the child, so children are started from the main
    thread only.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def terminate(processes: Iterable[subprocess.Popen], grace_seconds: float = 5.0) -> None:
    """SIGTERM every process still running, wait up to ``grace_seconds``, then SIGKILL the rest."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.terminate()
        process.send_signal(signal.SIGCONT)  # a stopped process acts on SIGTERM only once resumed
    deadline = time.monotonic() + grace_seconds
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def peak_rss_bytes() -> int:
    """This process's own peak resident set size, in bytes.

    Linux's VmHWM starts afresh at exec; ru_maxrss would carry the parent's peak into a child.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
