"""msgstate's audit console, a server-rendered web app (needs ``msgstate[web]``).

``msgstate serve --db URL`` runs it with uvicorn; :func:`create_app` gives the ASGI
app to mount in your own server. Everything it shows comes from the service's
public queries; every asset (Chart.js included) ships inside the package.
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as missing:  # pragma: no cover - the web extra is not installed
    raise ImportError(
        f"msgstate's console needs starlette and jinja2 ({missing}); "
        "install them with: pip install 'msgstate[web]'"
    ) from None

from msgstate.web.app import CONTENT_SECURITY_POLICY, create_app, policy_from_form
from msgstate.web.auth import load_tokens, parse_tokens
from msgstate.web.diagram import transitions_svg

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "create_app",
    "load_tokens",
    "parse_tokens",
    "policy_from_form",
    "transitions_svg",
]
