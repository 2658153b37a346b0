import socket

import pytest


def test_guard_allows_loopback_and_refuses_anything_else():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("tests_conftest", Path(__file__).with_name("conftest.py"))
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    assert conftest.is_loopback(("127.0.0.1", 80)) and conftest.is_loopback(("::1", 80, 0, 0))
    assert conftest.is_loopback(("localhost", 80)) and conftest.is_loopback("/tmp/sock")
    assert not conftest.is_loopback(("192.0.2.1", 80)) and not conftest.is_loopback(("example.org", 80))


def test_the_guard_is_installed_and_blocks_before_any_packet():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # the guard raises inside connect() before the OS is asked to send anything
        with pytest.raises(RuntimeError, match="tests stay on loopback"):
            sock.connect(("example.org", 80))
    finally:
        sock.close()
