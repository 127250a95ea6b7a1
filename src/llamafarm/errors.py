"""The one error tree. Each class carries the HTTP status the API answers with.

    LfError (500)
     ├── BadRequest (400)
     │    └── InvalidName
     ├── Forbidden (403)
     ├── NotFound (404)
     ├── Conflict (409)
     ├── PayloadTooLarge (413)
     ├── Unprocessable (422)
     │    ├── ConfigInvalid
     │    └── ParseFailed
     │         └── ParseLimitExceeded
     ├── BadGateway (502)
     ├── Unavailable (503)
     │    ├── EmbedderUnavailable
     │    ├── RerankerUnavailable
     │    ├── ProviderUnavailable
     │    └── MigrationRefused
     └── GatewayTimeout (504)

Code below `api/` raises these; one handler in `api/errors.py` renders them
as `{"detail": message}`.
"""

from __future__ import annotations


class LfError(Exception):
    """Base of every error the server reports to a client."""

    status: int = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(LfError):
    status = 400


class InvalidName(BadRequest):
    """A namespace, project or other name that is not safe to use as a path segment."""


class Forbidden(LfError):
    """An API key that may not do this (read-only, or limited to another namespace)."""

    status = 403


class NotFound(LfError):
    status = 404


class Conflict(LfError):
    status = 409


class Unprocessable(LfError):
    status = 422


class ConfigInvalid(Unprocessable):
    """A llamafarm.yaml (or a config sent by a client) that does not validate."""


class Unavailable(LfError):
    status = 503


class PayloadTooLarge(LfError):
    status = 413


class ParseFailed(Unprocessable):
    """A file that no parser handles, or that yields no usable text; it fails alone."""


class ParseLimitExceeded(ParseFailed):
    """A file's parse went past a limit of the parse sandbox (time, memory, zip size); the
    detail names the setting."""


class EmbedderUnavailable(Unavailable):
    """The embedding service or model cannot be reached or loaded."""


class RerankerUnavailable(Unavailable):
    """The reranking model is not in the local cache, or its service cannot be reached."""


class BadGateway(LfError):
    """A service we called answered with an error or something that is not its protocol."""

    status = 502


class ProviderUnavailable(Unavailable):
    """The chat model cannot be loaded or its server cannot be reached."""


class GatewayTimeout(LfError):
    """A service we called did not answer in time."""

    status = 504


class MigrationRefused(Unavailable):
    """The state database cannot be brought to this version's schema (another process holds
    the migration lock, or the database is from a newer or unknown version)."""
