"""Loading 100k points with 20 parameters into numpy, per storage layout.

Compares, in one run and on each backend:

- ``binary``: the layout campaign uses. Each point's values are one
  float64 blob, joined and decoded by a single ``numpy.frombuffer``.
- ``json``: the same values read from the JSON column and parsed per row.
- ``columns``: one float column per parameter, in a scratch table, read
  through the driver's cursor like ``binary``.

Run:  python -m benchmarks.bench_store_load [--points N] [--postgresql URL]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid

import numpy as np
import sqlalchemy as sa

from benchmarks.postgresql import POSTGRESQL_URL, scratch_schema
from benchmarks.report import write_section
from campaign import api
from campaign.config import parse_campaign
from campaign.store import models
from campaign.store.points import insert_points, load_points

DIM = 20


def make_campaign(url: str, n: int):
    definition = {
        "name": f"load-{uuid.uuid4().hex[:6]}",
        "parameters": {f"p{i}": {"low": -1, "high": 1} for i in range(DIM)},
        "likelihood": {"python": "math:hypot"},
    }
    fit = api.create_campaign(parse_campaign(definition), url, check=False)
    x = np.random.default_rng(0).uniform(-1, 1, size=(n, DIM))
    chi2 = (x**2).sum(axis=1)
    start = time.perf_counter()
    with fit.store.transaction() as session:
        insert_points(session, session.get(models.Campaign, fit.id), x, "manual", chi2=chi2)
    insert_seconds = time.perf_counter() - start
    return fit, x, insert_seconds


def time_best(function, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def load_binary(fit):
    with fit.store.engine.connect() as connection:
        return load_points(connection, fit.id, DIM).x


def load_json(fit):
    table = models.Point.__table__
    names = list(fit.space.names)
    with fit.store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(sa.cast(table.c.params, sa.Text)).where(table.c.campaign_id == fit.id).order_by(table.c.id)
        ).scalars().all()
    return np.array([[document[name] for name in names] for document in map(json.loads, rows)])


def make_column_table(fit, x) -> sa.Table:
    metadata = sa.MetaData()
    table = sa.Table(
        f"bench_columns_{uuid.uuid4().hex[:6]}", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        *[sa.Column(name, sa.Double) for name in fit.space.names],
    )
    metadata.create_all(fit.store.engine)
    with fit.store.engine.begin() as connection:
        connection.execute(table.insert(), [dict(zip(fit.space.names, map(float, row))) for row in x])
    return table


def load_columns(fit, table):
    """Read the scratch table through the driver's cursor, as load_points does."""
    columns = ", ".join(f'"{name}"' for name in fit.space.names)
    with fit.store.engine.connect() as connection:
        dbapi_connection = connection.connection.dbapi_connection
        postgresql = connection.dialect.name == "postgresql"
        cursor = dbapi_connection.cursor(binary=True) if postgresql else dbapi_connection.cursor()
        cursor.execute(f"SELECT {columns} FROM {table.name} ORDER BY id")
        rows = cursor.fetchall()
        cursor.close()
    return np.array(rows, dtype=float)


def measure(url: str, n: int) -> dict:
    fit, x, insert_seconds = make_campaign(url, n)
    column_table = make_column_table(fit, x)
    assert np.array_equal(load_binary(fit), x)
    assert np.array_equal(load_json(fit), x)
    assert np.array_equal(load_columns(fit, column_table), x)
    result = {
        "insert": insert_seconds,
        "binary": time_best(lambda: load_binary(fit)),
        "json": time_best(lambda: load_json(fit)),
        "columns": time_best(lambda: load_columns(fit, column_table)),
    }
    column_table.drop(fit.store.engine)
    fit.store.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--postgresql", default=POSTGRESQL_URL)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory, scratch_schema(args.postgresql) as postgresql_url:
        backends = {"SQLite": f"sqlite:///{directory}/load.db", "PostgreSQL": postgresql_url}
        results = {name: measure(url, args.points) for name, url in backends.items()}

    n = args.points
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [
        f"{n:,} points with {DIM} parameters, best of 3 loads into a numpy array of shape ({n}, {DIM}).",
        f"Load average (1, 5, 15 min) at the end of the run: {load}.",
        "",
        "| backend | layout | load s | points/s | vs binary |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for backend, result in results.items():
        for layout in ("binary", "json", "columns"):
            seconds = result[layout]
            lines.append(
                f"| {backend} | {layout} | {seconds:.3f} | {n / seconds:,.0f} | {seconds / result['binary']:.1f}x slower |"
                if layout != "binary" else f"| {backend} | {layout} | {seconds:.3f} | {n / seconds:,.0f} | 1.0 |"
            )
    lines += ["", "Bulk insert of the same points through `insert_points` (one statement): " + ", ".join(
        f"{backend} {n / r['insert']:,.0f} points/s" for backend, r in results.items()) + "."]
    write_section("Loading points into numpy", "\n".join(lines),
                  command=f"python -m benchmarks.bench_store_load --points {n}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
