"""The CLI: accurate help, one-line user errors, and stages that are not built say so."""

from __future__ import annotations

import subprocess
import sys

import pytest

STAGES = ["fetch", "import-gguf", "export", "tokenizer", "expand", "train", "plan", "merge", "route", "routing", "ppl",
          "generate", "eval", "demo", "data"]


def test_root_help_lists_every_stage(run_cli):
    rc, out, _ = run_cli("--help")
    assert rc == 0
    for stage in STAGES:
        assert stage in out


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_has_help(run_cli, stage):
    rc, out, _ = run_cli(stage, "--help")
    assert rc == 0 and "Usage" in out


def test_console_script_user_error_is_one_line_without_traceback(tmp_path):
    """A real subprocess through the installed entry point: exit 1, one line, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "mixnu", "merge", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mixnu: error:"), proc.stderr


def test_unknown_command_is_a_usage_error(run_cli):
    rc, _, err = run_cli("frobnicate")
    assert rc == 2 and "No such command" in err
