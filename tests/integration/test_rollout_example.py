"""examples/canary_rollout.py: a service whose `validate=` refuses a bad canary, and the rollout
halting by itself (the worked example of docs/rollouts.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "canary_rollout.py"


def test_the_canary_example_halts_by_itself(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path / "work")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("10 instances run main") and lines[0].endswith("orders.max-items = 100")
    assert lines[2].startswith("the rollout halted by itself: 1 cohort instance rejected")
    assert "this build pages at most 500 items" in lines[2]
    assert lines[3].startswith("no instance ever applied") and lines[3].endswith("orders.max-items = [100]")
    assert "orders at main: halted, step 50% of [50%, 100%]" in lines
    assert "this build pages at most 500 items" in result.stderr  # each refusal is logged by the client


def test_the_canary_example_takes_the_server_port(tmp_path):
    """`--port` (issue 20 item 10): the server it starts listens there, nowhere else."""
    from tests.helpers import free_port

    port = free_port()
    work = tmp_path / "work"
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), str(work), "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "orders at main: halted, step 50% of [50%, 100%]" in result.stdout.splitlines()
    assert f"Listening at: http://127.0.0.1:{port} " in (work / "server.log").read_text()
