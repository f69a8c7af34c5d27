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

    codes = [
        "| code | name | retry class | description |",
        "| --- | --- | --- | --- |",
        *(
            f"| {c.code} | `{c.name}` | {c.retry_class.name} | {c.desc} |"
            for c in sorted(catalog().values(), key=lambda c: c.code)
        ),
    ]
    (out / "codes.md").write_text("\n".join(codes) + "\n", encoding="utf-8")
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
