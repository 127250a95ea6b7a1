"""The HTTP API: `create_app(settings)` and one router per resource."""

from llamafarm.api.app import create_app

__all__ = ["create_app"]
