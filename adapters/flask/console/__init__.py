"""The web console: plain ES modules and CSS served from the package, no build step.

``register_console`` mounts the console under ``GRAYRELEASE_CONSOLE_PREFIX`` (default
``/gray-release``): the page at ``{prefix}/``, what it needs to know about this installation at
``{prefix}/console.json``, and its files under ``{prefix}/static/<digest>/``. The page is
served with a strict Content-Security-Policy (``default-src 'self'``): the console has no
inline script, style or event handler, and builds every element from API data with
``textContent``. The API prefix reaches the page in a ``<meta>`` tag.
"""

from __future__ import annotations

import hashlib
import html
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, send_from_directory
from grayrelease_adapters.flask.http import json_response

from grayrelease_core import ValidationError
from grayrelease_core.lifecycle import TRANSITIONS
from grayrelease_core.routing import DEFAULT_EVENTS, EVENT_SEVERITY

STATIC = Path(__file__).resolve().parent / "static"
"""The console's files (resolved: an editable install links them from the source tree)."""
DEFAULT_PREFIX = "/gray-release"
CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""No inline script or style anywhere, and no other origin: the page works under this."""
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
IMMUTABLE = "public, max-age=31536000, immutable"


def console_prefix(raw: Any, api_prefix: str) -> str | None:
    """``GRAYRELEASE_CONSOLE_PREFIX`` checked: a path, or ``None`` (empty, None) for no console."""
    if raw is None or raw == "":
        return None
    field = "GRAYRELEASE_CONSOLE_PREFIX"
    if not isinstance(raw, str) or not raw.startswith("/") or raw.endswith("/"):
        raise ValidationError(field, 'must start with "/" and not end with one', value=raw)
    if raw == api_prefix:
        raise ValidationError(field, "must differ from GRAYRELEASE_URL_PREFIX", value=raw)
    return raw


def register_console(app: Flask, prefix: str, api_prefix: str) -> None:
    """Mount the console on ``app`` at ``prefix`` (checked by ``console_prefix``)."""
    app.register_blueprint(create_console_blueprint(api_prefix), url_prefix=prefix)


@cache
def static_digest() -> str:
    """A digest of every console file: their URLs change whenever one does, so browsers may
    keep them for a year and still never run a stale mix of modules."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STATIC).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def create_console_blueprint(api_prefix: str, name: str = "grayrelease_console") -> Blueprint:
    """The console's routes; ``register_console`` mounts them under the console prefix."""
    console = Blueprint(name, __name__)

    @console.get("/")
    def index() -> Response:
        digest = static_digest()
        page = (STATIC / "index.html").read_text(encoding="utf-8")
        page = page.replace("{{API_PREFIX}}", html.escape(api_prefix, quote=True)).replace(
            "{{STATIC}}", f"static/{digest}"
        )
        answer = Response(page, mimetype="text/html")
        answer.headers.update(SECURITY_HEADERS)
        answer.headers["Cache-Control"] = "no-store"
        return answer

    @console.get("/console.json")
    def settings() -> Response:
        answer = json_response(_console_settings(api_prefix))
        answer.headers.update(SECURITY_HEADERS)
        answer.headers["Cache-Control"] = "no-store"
        return answer

    @console.get("/static/<digest>/<path:filename>")
    def static(digest: str, filename: str) -> Response:
        if digest != static_digest():
            abort(404)  # an old page asking for files that changed: it must reload
        answer = send_from_directory(STATIC, filename, conditional=True, max_age=31536000)
        suffix = Path(filename).suffix
        if suffix in TYPES:
            answer.headers["Content-Type"] = TYPES[suffix]
        answer.headers.update(SECURITY_HEADERS)
        answer.headers["Cache-Control"] = IMMUTABLE
        return answer

    return console


def _console_settings(api_prefix: str) -> dict[str, Any]:
    """What the page needs to know about this installation, from the engine itself."""
    engine = current_app.extensions["grayrelease"].state(current_app).engine
    return {
        "apiPrefix": api_prefix,
        "transitions": {
            action.value: sorted(status.value for status in sources)
            for action, (sources, _) in TRANSITIONS.items()
        },
        "strategies": list(engine.strategies.names),
        "channels": sorted(engine.notifiers),
        "events": list(EVENT_SEVERITY),
        "defaultEvents": list(DEFAULT_EVENTS),
        "rolesEnabled": engine.auth.enabled,
        "approvalEnvironments": sorted(engine.auth.approval_environments),
        "defaultGroup": engine.settings.default_group,
    }
