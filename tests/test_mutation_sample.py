"""A fixed sample of mutants the test suite must kill, so its strength cannot decay.

Each mutant of :data:`tests.mutation.SAMPLE` (the transition table, the attempt
limit, the backoff cap, the read model's due filter, both age boundaries, and the
gaps issue 14 found) is applied to a copy of the package and its tests run in a
subprocess against it: they must fail. The whole mutation run is
``python -m tests.mutation`` (docs/testing.md); this sample runs in every CI run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.mutation import SAMPLE, copy_checkout, copy_env, run_sample_mutant


def test_copies_import_the_copy(tmp_path: Path) -> None:
    """A subprocess with the copy's environment imports the copy, not the
    checkout (else a sample mutant would be 'killed' by nothing)."""
    copy_checkout(tmp_path)
    found = subprocess.run(
        [sys.executable, "-c", "import msgstate, tests; print(msgstate.__file__)"],
        cwd=tmp_path,
        env=copy_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(found).is_relative_to(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SAMPLE))
def test_sample_mutant_is_killed(tmp_path: Path, name: str) -> None:
    """The mutant's tests fail (exit 1: failures, not a collection error)."""
    result = run_sample_mutant(name, tmp_path)
    output = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode != 0, f"mutant {name!r} survived:\n{output}"
    assert 1 == result.returncode, f"mutant {name!r}: not a test failure\n{output}"
