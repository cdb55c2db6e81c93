"""Per-campaign SQL views with one column per parameter.

``points_<suffix>`` shows a campaign's points and ``samples_<suffix>`` its
chain samples, where the suffix is the campaign name in lower case with
every character other than a letter or digit replaced by ``_``.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["view_suffix", "create_views", "drop_views", "POINT_VIEW_COLUMNS"]

#: Columns of the points view after the parameters, as SQL select items.
POINT_VIEW_COLUMNS = (
    "chi2", "status", "origin", "step", "attempts", "error", "outputs",
    "likelihood_version", "seed", "executor", "host", "pid", '"user"',
    "created_at", "created_by", "started_at", "finished_at AS evaluated_at",
    "eval_seconds",
)


def view_suffix(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "_", name.lower())


def _parameter(dialect: str, names: list[str], table: str = "") -> list[str]:
    prefix = f"{table}." if table else ""
    if dialect == "postgresql":
        return [f"({prefix}params->>'{n}')::double precision AS \"{n}\"" for n in names]
    return [f"json_extract({prefix}params, '$.\"{n}\"') AS \"{n}\"" for n in names]


def create_views(connection: Connection, campaign_id: int, suffix: str, names: list[str]) -> None:
    """Create the points and samples views of one campaign."""
    dialect = connection.dialect.name
    columns = ["id", *_parameter(dialect, names), *POINT_VIEW_COLUMNS]
    connection.execute(sa.text(
        f'CREATE VIEW "points_{suffix}" AS SELECT {", ".join(columns)} '
        f"FROM points WHERE campaign_id = {int(campaign_id)}"
    ))
    sample_columns = ["s.chain_id", "s.iteration", "s.walker"] + _parameter(dialect, names, "s") + ["s.log_prob"]
    connection.execute(sa.text(
        f'CREATE VIEW "samples_{suffix}" AS SELECT {", ".join(sample_columns)} '
        f"FROM chain_samples s JOIN chains c ON c.id = s.chain_id WHERE c.campaign_id = {int(campaign_id)}"
    ))


def drop_views(connection: Connection, suffix: str) -> None:
    for kind in ("points", "samples"):
        connection.execute(sa.text(f'DROP VIEW IF EXISTS "{kind}_{suffix}"'))
