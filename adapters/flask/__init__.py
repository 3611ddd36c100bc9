"""Mount grayrelease into a Flask app: the extension, its REST API blueprint and CLI."""

from __future__ import annotations

from .api import create_api_blueprint
from .extension import DEFAULTS, GrayRelease

__all__ = ["DEFAULTS", "GrayRelease", "create_api_blueprint"]
