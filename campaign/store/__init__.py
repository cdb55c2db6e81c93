"""The campaign store: one database, SQLite or PostgreSQL, behind one class."""

from __future__ import annotations

import contextlib
from typing import Iterator

from sqlalchemy.orm import Session

from campaign.store.engine import create_engine, resolve_url, safe_url, transaction
from campaign.store.schema import ensure_schema

__all__ = ["Store"]


class Store:
    """A connection to a campaign database.

    Args:
        url: Database URL; defaults to ``$CAMPAIGN_DATABASE_URL``, then
            ``sqlite:///campaign.db``.
        check_schema: Create the schema in an empty database and refuse an
            out-of-date one. Only ``campaign db`` commands turn this off.
    """

    def __init__(self, url: str | None = None, *, check_schema: bool = True):
        self.url = resolve_url(url)
        self.engine = create_engine(self.url)
        if check_schema:
            ensure_schema(self.engine)

    def __repr__(self) -> str:
        return f"Store({safe_url(self.url)!r})"

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """Open a session that commits on success and rolls back on error."""
        with transaction(self.engine) as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
