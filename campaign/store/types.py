"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import math

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

__all__ = ["ExactFloat", "JSONType", "Id"]

#: Primary and foreign keys: 64 bits on PostgreSQL, SQLite's INTEGER rowid otherwise.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: JSON documents: JSONB on PostgreSQL, JSON text on SQLite.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class ExactFloat(TypeDecorator):
    """A double that keeps NaN, +inf and -inf on both backends.

    PostgreSQL's double precision stores all three. SQLite stores the
    infinities as REAL but turns NaN into NULL, so NaN is stored there as the
    text ``'NaN'``: it then compares greater than every number, and
    ``chi2 < 20`` stays false for it, as it is for NaN on PostgreSQL.
    """

    impl = sa.Double
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = float(value)
        if dialect.name == "sqlite" and math.isnan(value):
            return "NaN"
        return value

    def bind_processor(self, dialect):
        if dialect.name == "sqlite":
            # SQLite's own DOUBLE processor would turn the text 'NaN' back into a float.
            return lambda value: self.process_bind_param(value, dialect)
        return super().bind_processor(dialect)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return float(value)
