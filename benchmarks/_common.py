"""Helpers shared by the benchmark scripts: machine facts, timing and a markdown table.

The scripts compare our code with a named peer in the same process run; they print figures
and never assert on a time (times on a shared machine are noisy).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def machine_info() -> dict[str, Any]:
    """CPU count, usable cores, torch threads, versions and load average of this run."""
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    if hasattr(os, "getloadavg"):
        info["load_avg_1_5_15"] = "/".join(f"{x:.2f}" for x in os.getloadavg())
    return info


def print_machine(title: str, **extra: Any) -> None:
    """Print the benchmark's title and the machine facts (a load average near or above the
    core count means the figures are noisy)."""
    print(f"## {title}\n")
    for key, value in {**machine_info(), **extra}.items():
        print(f"- {key}: {value}")
    print()


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op threads when given (None keeps torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def cuda_sync() -> None:
    """Wait for queued CUDA work (no-op without CUDA), so that a timer sees it finish."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_calls(
    fn: Callable[[], Any],
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    if sync is not None:
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - start)
    return times


def time_interleaved(
    fns: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Like :func:`time_calls` for several functions, taking turns (ours, peer, ours, ...)
    so that a change in the machine's load hits both sides alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    if sync is not None:
        sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if sync is not None:
                sync()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    """Median (the figure the tables report)."""
    return float(statistics.median(values))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table of already formatted cells."""
    lines = [
        "| " + " | ".join(str(h) for h in headers) + " |",
        "| " + " | ".join("---" for _ in headers) + " |",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
