"""``r1lab serve`` on the command line: its keys, one-line errors for a bad folder or a busy
port, and what it serves under which name."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from r1lab.cli import main
from r1lab.config import load_config
from r1lab.errors import UserError
from r1lab.serve import stage
from r1lab.serve.backends import OracleBackend
from r1lab.serve.stage import ServeConfig, build_backend


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("r1lab: error: ") and err.count("\n") == 1, err
    return err


def test_help_lists_the_keys(capsys):
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    for key in ("model = 'oracle'", "name = ''", "host = '127.0.0.1'", "port = 8000",
                "device = 'auto'", "oracle.noise = 1.0", "oracle.error_rate = 0.02"):  # fmt: skip
        assert f"\n  {key}" in out, key


def test_a_missing_model_folder_is_a_one_line_error(capsys):
    assert main(["serve", "model=/nonexistent"]) == 2
    assert "/nonexistent: model folder not found" in _error(capsys)


def test_a_folder_without_weights_is_a_one_line_error(capsys, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert main(["serve", f"model={tmp_path}"]) == 2
    assert f"{tmp_path}: model folder has no weights" in _error(capsys)
    assert main(["serve", f"model={tmp_path / 'config.json'}"]) == 2
    assert "config.json: expected a Hugging Face model folder" in _error(capsys)


def test_bad_values_are_refused(capsys):
    assert main(["serve", "port=70000"]) == 2
    assert "port" in _error(capsys)
    assert main(["serve", "device=tpu"]) == 2
    assert "device" in _error(capsys)


def test_a_busy_port_is_a_one_line_error(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", f"port={port}"]) == 2
    assert f"cannot serve on 127.0.0.1:{port}" in _error(capsys)


def test_names():
    backend, name = build_backend(ServeConfig())
    assert isinstance(backend, OracleBackend) and name == "oracle"
    assert build_backend(ServeConfig(name="judge"))[1] == "judge"
    cfg = load_config(ServeConfig, None, ["oracle.noise=0", "oracle.seed=3"])
    backend, _ = build_backend(cfg)
    assert (backend.judge.cfg.noise, backend.judge.cfg.seed) == (0.0, 3)
    with pytest.raises(UserError, match="oracle: model folder not found"):
        build_backend(ServeConfig(model="./oracle"))  # a folder named oracle is a folder


def test_run_serve_serves_in_the_foreground_until_stopped(capsys, monkeypatch):
    from r1lab.serve import server as server_module

    servers = []

    class Recorded(server_module.Server):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            servers.append(self)

    monkeypatch.setattr(server_module, "Server", Recorded)  # run_serve imports it when run
    done = threading.Event()

    def serve():
        stage.run_serve(ServeConfig(port=0, name="judge"))
        done.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not (servers and servers[0]._server.started) and time.monotonic() < deadline:
        time.sleep(0.02)
    (server,) = servers
    line = capsys.readouterr().out
    assert line == f"r1lab serve: judge on http://127.0.0.1:{server.port}/v1 (Ctrl-C stops)\n"
    models = httpx.get(f"{server.base_url}/models", timeout=5).json()
    assert [m["id"] for m in models["data"]] == ["judge"]
    server._server.should_exit = True
    assert done.wait(10)
