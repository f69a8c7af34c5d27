"""Every ```python block in the README and docs/ runs, in order, per page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


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


def test_readme_has_code() -> None:
    """The README's quick start is executed, not just present."""
    assert len(blocks(ROOT / "README.md")) >= 1
