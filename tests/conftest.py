"""Shared fixtures: the demo workflow, run once per test session through Snakemake itself."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Tests never download: in this process a connection to anything but the loopback
# interface is refused as an offline machine would refuse it, and the test that tried fails
# (below) even if the code under test swallowed the error. Subprocesses get the offline
# variables above.
_REMOTE_ATTEMPTS: list[str] = []
_socket_connect = socket.socket.connect
_socket_connect_ex = socket.socket.connect_ex


def _is_local(address: object) -> bool:
    if not isinstance(address, tuple):  # a unix socket path
        return True
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:  # a host name: resolving it already left the machine's own names
        return False


def _refuse_remote(address: object) -> None:
    if not _is_local(address):
        _REMOTE_ATTEMPTS.append(repr(address))
        raise ConnectionRefusedError(f"tests never download: connection to {address!r} refused")


def _connect(self: socket.socket, address: object) -> None:
    _refuse_remote(address)
    return _socket_connect(self, address)


def _connect_ex(self: socket.socket, address: object) -> int:
    _refuse_remote(address)
    return _socket_connect_ex(self, address)


socket.socket.connect = _connect  # type: ignore[method-assign]
socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _no_remote_connections():
    """Fail the test that tried to reach a remote host."""
    _REMOTE_ATTEMPTS.clear()
    yield
    assert not _REMOTE_ATTEMPTS, f"the test tried to reach the network: {_REMOTE_ATTEMPTS}"


def run_snakemake(workdir: Path, *args: str, timeout: int = 3000) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in ``workdir`` with extra arguments; fail with its output."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        *args,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(
            f"snakemake failed ({' '.join(args)}):\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        )
    return result


def mini_config(directory: Path, **teacher_train: object) -> Path:
    """The mini configuration with a tiny BERT teacher backbone built in ``directory``."""
    import yaml

    from optical_clir.models.tiny import save_tiny_backbone

    cfg = yaml.safe_load((REPO / "tests/data/mini/config.yaml").read_text())
    words = set()
    for path in [
        *(REPO / "tests/data/mini/queries").glob("*.tsv"),
        REPO / "tests/data/mini/docs.jsonl",
    ]:
        words.update(w.strip('.,?"{}:').lower() for w in path.read_text().split())
    backbone = save_tiny_backbone(
        directory / "tiny-backbone", seed=0, words=sorted(w for w in words if w)
    )
    cfg["teacher"]["model"]["backbone"] = str(backbone)
    cfg["teacher"]["train"].update(teacher_train)
    path = directory / "mini.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory) -> Path:
    """The whole DAG on the mini configuration (tiny models, a few steps each)."""
    workdir = tmp_path_factory.mktemp("mini")
    run_snakemake(workdir, "--configfile", str(mini_config(workdir)))
    return workdir


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The whole demo workflow (default config) run end to end in a fresh working directory."""
    workdir = tmp_path_factory.mktemp("demo")
    start = time.perf_counter()
    run_snakemake(workdir)
    (workdir / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    return workdir
