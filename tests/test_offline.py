"""The test session's network guard (conftest.py): remote hosts refused, loopback allowed."""

from __future__ import annotations

import socket
import threading

import pytest
from conftest import _REMOTE_ATTEMPTS


def test_a_remote_connection_is_refused_and_recorded() -> None:
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="never download"):
        sock.connect(("192.0.2.1", 80))  # TEST-NET-1: never routed
    assert _REMOTE_ATTEMPTS == ["('192.0.2.1', 80)"]
    _REMOTE_ATTEMPTS.clear()  # recorded on purpose here; any other test would fail


def test_loopback_servers_stay_reachable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        accepted = threading.Thread(target=lambda: server.accept()[0].close())
        accepted.start()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        accepted.join(timeout=5)
    assert not _REMOTE_ATTEMPTS
