"""campaign: a database-backed manager for global-fit campaigns."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("campaign")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

#: Names of :mod:`campaign.api` available as ``campaign.NAME``. They are
#: imported on first use, so ``import campaign`` alone loads no pandas or SQLAlchemy.
API_NAMES = ("Campaign", "create_campaign", "open_campaign", "campaigns", "query", "import_bundle")

__all__ = ["__version__", *API_NAMES]


def __getattr__(name: str):
    if name in API_NAMES:
        from campaign import api

        return getattr(api, name)
    raise AttributeError(f"module 'campaign' has no attribute {name!r}")
