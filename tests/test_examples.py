"""Every example runs as a user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_quickstart_runs_and_ends_delivered(tmp_path: Path) -> None:
    """quickstart.py fails, resends once, is delivered, and leaves a SQLite file."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    lines = result.stdout.splitlines()
    assert "final status: SEND_SUCC (2), seq 1001" in lines
    events = [line.split()[2] for line in lines if line.startswith("  v")]
    assert ["Created", "SendFailed", "ResendRequested", "Delivered"] == events
    assert (tmp_path / "quickstart.db").stat().st_size > 0
