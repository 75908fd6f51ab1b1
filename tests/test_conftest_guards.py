"""The guards in tests/conftest.py: no network beyond the loopback interface, ``needs_cuda`` auto-skip."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NetworkAccessBlocked

CONFTEST = Path(__file__).with_name("conftest.py")
UNROUTABLE = ("10.255.255.1", 80)  # a real connect would hang until its timeout: nothing answers


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections; yields its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


def _assert_blocked(call, network_guard, where: str) -> None:
    started = time.monotonic()
    with pytest.raises(NetworkAccessBlocked, match=where):
        call()
    assert time.monotonic() - started < 0.5  # refused by the guard, not timed out by the network
    assert network_guard.blocked[-1] == where
    network_guard.blocked.clear()  # this test meant to be blocked


def test_remote_connections_are_blocked_before_anything_is_sent(network_guard):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        _assert_blocked(lambda: sock.connect(UNROUTABLE), network_guard, "10.255.255.1:80")
        with pytest.raises(OSError):
            sock.getpeername()  # never connected: the real connect() was not called
        _assert_blocked(lambda: sock.connect_ex(UNROUTABLE), network_guard, "10.255.255.1:80")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        _assert_blocked(lambda: udp.connect(("192.0.2.1", 53)), network_guard, "192.0.2.1:53")
    _assert_blocked(lambda: socket.create_connection(UNROUTABLE, timeout=5), network_guard, "10.255.255.1:80")
    # Host names are refused before they are resolved (a DNS query is network access too).
    _assert_blocked(
        lambda: socket.create_connection(("example.com", 443), timeout=5), network_guard, "example.com:443"
    )


def test_urllib_is_blocked_too(network_guard):
    import urllib.request

    with pytest.raises(NetworkAccessBlocked):
        urllib.request.urlopen("http://10.255.255.1/weights.pth", timeout=5)
    assert network_guard.blocked == ["10.255.255.1:80"]
    network_guard.blocked.clear()


def test_loopback_connections_still_work(listener, network_guard):
    with socket.create_connection(("127.0.0.1", listener), timeout=5) as sock:
        assert sock.getpeername()[1] == listener
    with socket.create_connection(("localhost", listener), timeout=5) as sock:
        assert sock.getpeername()[1] == listener
    with socket.socket() as sock:
        sock.settimeout(5)
        sock.connect(("127.0.0.1", listener))
        assert sock.getpeername() == ("127.0.0.1", listener)
    with socket.socket() as sock:
        sock.settimeout(5)
        assert sock.connect_ex(("127.0.0.1", listener)) == 0
    assert network_guard.blocked == []


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 support")
def test_ipv6_loopback_is_allowed(network_guard):
    try:
        server = socket.socket(socket.AF_INET6)
        server.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server:
        server.listen(1)
        with socket.socket(socket.AF_INET6) as sock:
            sock.settimeout(5)
            sock.connect(("::1", server.getsockname()[1]))
            assert sock.getpeername()[0] == "::1"
    assert network_guard.blocked == []


def test_unix_sockets_are_not_checked(tmp_path, network_guard):
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("no AF_UNIX sockets")
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            assert sock.getpeername() == path
    assert network_guard.blocked == []


def test_a_test_that_swallows_the_error_still_fails(pytester):
    """The guard records what it blocked: catching NetworkAccessBlocked does not hide the attempt."""
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        test_inner="""
        import socket

        def test_swallows():
            try:
                socket.create_connection(("10.255.255.1", 80), timeout=5)
            except Exception:
                pass

        def test_local_only():
            with socket.socket() as server:
                server.bind(("127.0.0.1", 0))
                server.listen(1)
                socket.create_connection(server.getsockname(), timeout=5).close()
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*the test tried to use the network: 10.255.255.1:80*"])


def test_needs_cuda_tests_are_skipped_without_cuda(pytester):
    import torch

    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini("[pytest]\nmarkers =\n    needs_cuda: needs an NVIDIA GPU\n")
    pytester.makepyfile(
        test_inner="""
        import pytest
        import torch

        @pytest.mark.needs_cuda
        def test_on_the_gpu():
            assert torch.cuda.is_available()
            assert torch.ones(2, device="cuda").sum().item() == 2

        def test_anywhere():
            pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rs")
    if torch.cuda.is_available():
        result.assert_outcomes(passed=2)
    else:
        result.assert_outcomes(passed=1, skipped=1)
        result.stdout.fnmatch_lines(["*SKIPPED*needs an NVIDIA GPU: torch.cuda.is_available() is False*"])


@pytest.mark.needs_cuda
def test_needs_cuda_tests_run_on_a_gpu():
    """Skipped on CPU-only machines by the conftest hook; on a GPU machine it must really run there."""
    import torch

    assert torch.cuda.is_available()
    x = torch.arange(4.0, device="cuda")
    assert (x * 2).sum().item() == 12.0
