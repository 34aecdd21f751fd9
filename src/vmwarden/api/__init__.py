"""vmwarden's REST API (FastAPI): ``create_app(Settings(...))``; auth in :mod:`.auth`."""

from vmwarden.api.app import create_app
from vmwarden.api.settings import Settings

__all__ = ["Settings", "create_app"]
