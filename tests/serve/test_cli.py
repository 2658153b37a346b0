"""`edgeai serve`'s safety before anything loads: loopback only without --allow-remote, the key
from a file or the environment (a key in argv warned about), a port in use said in one line."""

from __future__ import annotations

import socket

import httpx
from edgeai_testing.serve import serve_command

ECHO = ("--backend", "echo", "--model", "echo")


def test_a_non_loopback_address_is_refused_without_the_flag(cli):
    result = cli("serve", "--host", "0.0.0.0", *ECHO, timeout=60)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "refusing to listen on 0.0.0.0" in err and "--allow-remote" in err and "Traceback" not in err


def test_a_missing_key_file_and_a_port_in_use_are_one_line_errors(cli, tmp_path):
    result = cli("serve", "--api-key-file", str(tmp_path / "nope"), *ECHO, timeout=60)
    assert result.returncode == 2 and "the API key file does not exist" in result.stderr.decode()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        result = cli("serve", "--port", str(busy.getsockname()[1]), *ECHO, timeout=60)
    finally:
        busy.close()
    assert result.returncode == 2 and "cannot listen on 127.0.0.1" in result.stderr.decode()


def test_the_key_comes_from_a_file_or_the_environment(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    with serve_command("--api-key-file", str(key_file), *ECHO) as served:
        assert httpx.get(f"{served.url}/models", timeout=10).status_code == 401
        ok = httpx.get(f"{served.url}/models", headers={"Authorization": "Bearer from-file"}, timeout=10)
        assert ok.status_code == 200
    with serve_command(*ECHO, env={"EDGEAI_API_KEY": "from-env"}) as served:
        ok = httpx.get(f"{served.url}/models", headers={"Authorization": "Bearer from-env"}, timeout=10)
        assert ok.status_code == 200


def test_a_key_on_the_command_line_works_with_a_warning(tmp_path):
    with serve_command("--api-key", "visible", *ECHO) as served:
        ok = httpx.get(f"{served.url}/models", headers={"Authorization": "Bearer visible"}, timeout=10)
        assert ok.status_code == 200
        served.process.terminate()
        err = served.process.stderr.read()
    assert "shows in `ps`" in err
