"""Every ```python and ```console block in the README and docs/ runs, per page.

Python blocks run top to bottom in one namespace; console blocks run each
``$ command`` line in a shell (the ``msgstate`` command installed beside this
Python first on PATH) and must exit 0. Both run in a fresh temporary directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(python|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(page: Path, kind: str = "python") -> list[str]:
    return [
        code
        for found, code in BLOCK.findall(page.read_text(encoding="utf-8"))
        if found == kind
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_code_blocks_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's Python blocks execute top to bottom in one namespace."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MSGSTATE_DATABASE_URL", raising=False)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for number, code in enumerate(blocks(page), start=1):
        try:
            exec(compile(code, f"{page.name} block {number}", "exec"), namespace)
        except Exception as error:  # pragma: no cover - the failure is the report
            pytest.fail(f"{page.name} block {number} failed: {error!r}\n{code}")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    for code in blocks(page, "console"):
        for line in code.splitlines():
            if not line.startswith("$ "):
                continue
            result = subprocess.run(
                line[2:],
                shell=True,
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert result.returncode == 0, f"{page.name}: {line}\n{result.stderr}"


def test_readme_has_code() -> None:
    """The README's quick start is executed, not just present."""
    assert len(blocks(ROOT / "README.md")) >= 1


def test_ci_runs_both_readme_commands() -> None:
    """.ci/run runs the README's two shell commands exactly as written."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"^```sh\n(.*?)\n```", readme, re.MULTILINE | re.DOTALL)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 2 == len(commands)
    for command in commands:
        assert command in ci
