"""Wall time and peak memory of the README's two commands (after install), with a profile.

``demo``: the demo workflow (``snakemake --cores N``) in a fresh working directory, then
per rule the number of jobs, their summed run time and share, and the largest job's peak
memory (from Snakemake's ``benchmark:`` files): the profile that shows where time goes.
The named baseline is the run's own summed job time (wall / summed = how well the jobs
overlap on the cores). ``tests``: ``pytest -m "not demo"`` with its slowest tests.

    .venv/bin/python benchmarks/workflow_time.py demo  [--cores 2] [--keep DIR]
    .venv/bin/python benchmarks/workflow_time.py tests

Targets: demo under 10 minutes, tests under 10 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, print_machine

TARGET_S = 600.0


def _children_peak_mib() -> float:
    """Largest resident set of any finished child process so far (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def run_timed(cmd: list[str], log: Path, cwd: Path = REPO) -> tuple[float, int]:
    """Run ``cmd`` with output to ``log``; return wall seconds and the exit status."""
    start = time.perf_counter()
    with log.open("w") as out:
        status = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode
    return time.perf_counter() - start, status


def rule_profile(workdir: Path) -> list[dict]:
    """Per rule: jobs, summed seconds, largest max RSS, from results/benchmarks/<rule>/."""
    totals: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "seconds": 0.0, "max_rss_mib": 0.0})
    for path in (workdir / "results/benchmarks").rglob("*.tsv"):
        rule = path.relative_to(workdir / "results/benchmarks").parts[0]
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if not rows:
            continue
        row = rows[-1]
        entry = totals[rule]
        entry["jobs"] += 1
        entry["seconds"] += float(row["s"])
        rss = row.get("max_rss", "NA")
        if rss not in ("NA", "-", ""):
            entry["max_rss_mib"] = max(entry["max_rss_mib"], float(rss))
    return sorted(
        ({"rule": r, **v} for r, v in totals.items()), key=lambda e: e["seconds"], reverse=True
    )


def bench_demo(cores: str, keep: Path | None) -> None:
    workdir = keep or Path(tempfile.mkdtemp(prefix="optical-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(REPO / ".venv/bin/snakemake"), "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--cores", cores,
    ]  # fmt: skip
    print_machine("Demo workflow: wall time, peak memory, profile", workdir=workdir)
    wall, status = run_timed(cmd, workdir / "snakemake.out")
    peak = _children_peak_mib()
    profile = rule_profile(workdir)
    summed = sum(e["seconds"] for e in profile)
    print(f"exit status {status}; log: {workdir / 'snakemake.out'}\n")
    print("| measure | value |\n|---|---|")
    print(f"| wall time | {wall:.0f} s ({wall / 60:.1f} min) |")
    print(f"| summed job time (baseline) | {summed:.0f} s |")
    print(f"| wall / summed job time | {wall / summed:.2f} |" if summed else "| - | - |")
    print(f"| wall / 10-minute target | {wall / TARGET_S:.2f} |")
    print(f"| largest process peak RSS | {peak:.0f} MiB |\n")
    print("| rule | jobs | summed s | share | largest max RSS (MiB) |\n|---|---|---|---|---|")
    for e in profile:
        share = e["seconds"] / summed if summed else 0.0
        print(
            f"| {e['rule']} | {e['jobs']} | {e['seconds']:.0f} | {share:.0%} | "
            f"{e['max_rss_mib']:.0f} |"
        )


def bench_tests() -> None:
    print_machine("Test suite (make test): wall time and peak memory")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "pytest.out"
        cmd = [sys.executable, "-m", "pytest", "-m", "not demo", "-q", "--durations=12"]
        wall, status = run_timed(cmd, log)
        peak = _children_peak_mib()
        text = log.read_text(errors="replace")
    durations = text[text.find("slowest") - 10 :] if "slowest" in text else text[-3000:]
    print("| measure | value |\n|---|---|")
    print(f"| exit status | {status} |")
    print(f"| wall time | {wall:.0f} s ({wall / 60:.1f} min) |")
    print(f"| wall / 10-minute target | {wall / TARGET_S:.2f} |")
    print(f"| largest process peak RSS | {peak:.0f} MiB |\n")
    print("```\n" + durations.strip() + "\n```")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["demo", "tests"])
    parser.add_argument("--cores", default=str(os.cpu_count() or 1))
    parser.add_argument(
        "--keep", type=Path, help="demo working directory (default: a new temp dir)"
    )
    args = parser.parse_args()
    if args.what == "demo":
        bench_demo(args.cores, args.keep)
    else:
        bench_tests()


if __name__ == "__main__":
    main()
