"""llamafarm: a local-first AI project server."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llamafarm")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
