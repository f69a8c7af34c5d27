"""Sphinx configuration: furo theme, MyST Markdown, autodoc for the API page."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgstate  # noqa: E402
from msgstate.status import TRANSITIONS, to_mermaid  # noqa: E402

project = "msgstate"
author = "msgstate developers"
release = msgstate.__version__
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxcontrib.mermaid",
]
myst_enable_extensions = ["colon_fence"]
myst_fence_as_directive = ["mermaid"]
source_suffix = {".md": "markdown"}
html_theme = "furo"
html_title = f"msgstate {release}"
exclude_patterns = ["_build", "_generated/README.md"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
nitpicky = False
suppress_warnings = ["myst.xref_missing"]


def _write_generated() -> None:
    """Pages made from the code itself, so they cannot drift from it."""
    out = ROOT / "docs" / "_generated"
    out.mkdir(exist_ok=True)
    rows = [
        "| from | event | to | note |",
        "| --- | --- | --- | --- |",
        *(
            f"| {'(none)' if t.source is None else t.source.name} | {t.event} "
            f"| {t.target.name} | {t.note} |"
            for t in TRANSITIONS
        ),
    ]
    (out / "transitions.md").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (out / "diagram.md").write_text(
        "```mermaid\n" + to_mermaid() + "```\n", encoding="utf-8"
    )
    from msgstate.codes import catalog

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    entries = sorted(catalog().values(), key=lambda c: c.code)
    codes = [
        "| code | names (every header's spelling) | retry class | description |",
        "| --- | --- | --- | --- |",
        *(
            f"| {c.code if c.last is None else f'{c.code}-{c.last}'} "
            f"| {'<br>'.join(f'`{n}`' for n in c.spellings())} "
            f"| {c.retry_class.name} "
            f"| {cell(c.desc)}{' (legacy: IM SDK V3 only)' if c.legacy else ''} |"
            for c in entries
        ),
    ]
    (out / "codes.md").write_text("\n".join(codes) + "\n", encoding="utf-8")

    def family(code: int) -> str:
        if code < 0:
            return "negative (access layer)"
        if code < 2000:
            return "msgstate-local"
        if 120001 <= code <= 130000:
            return "120001-130000 (callback range)"
        return f"{str(code)[:-3]}xxx"

    counts: dict[str, int] = {}
    for c in entries:
        counts[family(c.code)] = counts.get(family(c.code), 0) + 1
    families = [
        "| family | entries |",
        "| --- | --- |",
        *(f"| {name} | {n} |" for name, n in counts.items()),
        f"| all | {len(entries)} |",
    ]
    (out / "code_families.md").write_text(
        "\n".join(families) + "\n", encoding="utf-8"
    )
    errors = [
        "| value | name | meaning |",
        "| --- | --- | --- |",
        *(
            f"| {int(e)} | `{e.name}` | {(e.__doc__ or '').strip()} |"
            for e in msgstate.ErrorCode
        ),
    ]
    (out / "errors.md").write_text("\n".join(errors) + "\n", encoding="utf-8")


_write_generated()
