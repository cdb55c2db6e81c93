"""Queries on points: bulk insert and fast loading into numpy."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from campaign.store import models
from campaign.store.campaigns import current_user

__all__ = ["PointArrays", "encode_x", "point_key", "insert_points", "load_points"]


@dataclass(frozen=True)
class PointArrays:
    """Points of one campaign as arrays.

    Attributes:
        ids: Point ids, shape (n,).
        x: Parameter values, shape (n, dim), in the campaign's parameter order.
        chi2: chi2 values, shape (n,); NaN where not evaluated.
    """

    ids: np.ndarray
    x: np.ndarray
    chi2: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def encode_x(row: np.ndarray) -> bytes:
    """Encode one point's parameter values as little-endian float64 bytes."""
    return np.ascontiguousarray(row, dtype="<f8").tobytes()


def point_key(x_bytes: bytes, likelihood_version: str) -> str:
    """Return a point's identity: a hash of its parameter values and likelihood version."""
    return hashlib.sha256(x_bytes + b"\0" + likelihood_version.encode()).hexdigest()


def insert_points(
    session: Session,
    campaign: models.Campaign,
    x: np.ndarray,
    origin: str,
    *,
    step: int | None = None,
    chi2: Sequence[float] | None = None,
    outputs: Sequence[dict | None] | None = None,
    executor: str | None = None,
) -> list[int]:
    """Insert points in one statement and return their ids in input order.

    Args:
        campaign: The campaign row.
        x: Parameter values, shape (n, dim), inside the campaign's box.
        origin: Where the points come from (``initial``, ``acquisition``,
            ``exploration``, ``validation``, ``import``, ``manual``).
        step: Active-learning step that proposed them.
        chi2: Known chi2 values; the points are then stored as done.
        outputs: Extra outputs per point, with ``chi2``.
        executor: How known chi2 values were obtained (e.g. ``import``).
    """
    x = np.atleast_2d(np.asarray(x, dtype=float))
    if len(x) == 0:
        return []
    names = [p.name for p in campaign.parameters]
    user = current_user()
    now = datetime.now(timezone.utc)
    version = campaign.likelihood_version
    rows = []
    for i, values in enumerate(x):
        x_bytes = encode_x(values)
        row = {
            "campaign_id": campaign.id,
            "key": point_key(x_bytes, version),
            "x": x_bytes,
            "params": dict(zip(names, map(float, values))),
            "status": "pending",
            "origin": origin,
            "step": step,
            "attempts": 0,
            "likelihood_version": version,
            "created_at": now,
            "created_by": user,
            "chi2": None,
            "outputs": None,
            "executor": None,
            "finished_at": None,
            "user": None,
        }
        if chi2 is not None:
            row.update(
                status="done", chi2=float(chi2[i]), executor=executor, finished_at=now, user=user,
                outputs=outputs[i] if outputs is not None else None,
            )
        rows.append(row)
    table = models.Point.__table__
    result = session.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows)
    return [row_id for (row_id,) in result]


def load_points(
    connection: Connection | Session,
    campaign_id: int,
    dim: int,
    statuses: Sequence[str] = ("done",),
    likelihood_version: str | None = None,
) -> PointArrays:
    """Load points with the given statuses into arrays, ordered by id.

    With ``likelihood_version``, only points evaluated with that version
    are loaded.

    This is the training path. It reads through the driver's cursor (binary
    transfer on PostgreSQL) and decodes the parameter blobs with one
    ``numpy.frombuffer``, so no per-value conversion happens in Python.
    """
    if isinstance(connection, Session):
        connection = connection.connection()
    dbapi_connection = connection.connection.dbapi_connection
    mark = "%s" if connection.dialect.name == "postgresql" else "?"
    sql = (
        f"SELECT id, x, chi2 FROM points WHERE campaign_id = {mark} "
        f"AND status IN ({', '.join([mark] * len(statuses))})"
    )
    arguments = [campaign_id, *statuses]
    if likelihood_version is not None:
        sql += f" AND likelihood_version = {mark}"
        arguments.append(likelihood_version)
    sql += " ORDER BY id"
    if connection.dialect.name == "postgresql":
        cursor = dbapi_connection.cursor(binary=True)
    else:
        cursor = dbapi_connection.cursor()
    try:
        cursor.execute(sql, arguments)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if not rows:
        return PointArrays(np.empty(0, dtype=np.int64), np.empty((0, dim)), np.empty(0))
    ids, xs, chi2 = zip(*rows)
    x = np.frombuffer(b"".join(xs), dtype="<f8").reshape(len(rows), dim)
    # SQLite returns NaN as the text 'NaN' and an unevaluated chi2 as None;
    # numpy converts both to NaN.
    chi2_values = np.array(chi2, dtype=float)
    return PointArrays(np.asarray(ids, dtype=np.int64), x.copy(), chi2_values)
