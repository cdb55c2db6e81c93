"""campaign: a database-backed manager for global-fit campaigns."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("campaign")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
