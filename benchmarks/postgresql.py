"""Scratch PostgreSQL schemas for benchmarks, dropped when a run ends."""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import Iterator
from urllib.parse import quote

import sqlalchemy as sa

#: The server benchmarks use: ``$CAMPAIGN_TEST_POSTGRESQL_URL``, as the tests do.
POSTGRESQL_URL = os.environ.get("CAMPAIGN_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def scratch_schema(base_url: str = POSTGRESQL_URL) -> Iterator[str]:
    """Create a fresh schema, yield a URL whose search_path is that schema, and drop it afterwards."""
    schema = "bench_" + uuid.uuid4().hex[:10]
    engine = sa.create_engine(base_url)
    with engine.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
