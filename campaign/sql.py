"""Read-only SQL queries on a campaign database.

Only read statements reach the database: the first keyword must be
SELECT, WITH, VALUES, EXPLAIN or, on PostgreSQL, TABLE. The database also
enforces read-only access, for writes inside a WITH or EXPLAIN ANALYZE: on
SQLite the connection runs with ``PRAGMA query_only``, on PostgreSQL the
query runs in a ``READ ONLY`` transaction. With a campaign name, temporary
views show only that campaign's rows. They take precedence over the tables
of the same names on both backends:

- ``points``: one column per parameter, then chi2, status, origin, step,
  evaluated_at and the other columns of ``points_<suffix>``;
- ``samples``: chain samples, one column per parameter, with log_prob;
- ``models``: model versions with their metrics and hyperparameters (JSON);
- ``chains``: sampler runs with acceptance fraction, tau and convergence;
- ``steps``, ``validations``, ``posterior_summaries``: the table's columns;
- ``best_fits``, ``profiles``, ``shap_summaries``: the table's columns and
  ``model_version``, the version number.

A temporary view can only be created while writes are still allowed, so
the views are made first and the connection turns read-only before the
user's statement runs.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from pathlib import Path

import numpy as np

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from campaign.errors import ConfigError, NotFoundError, SchemaError
from campaign.store.engine import create_engine, resolve_url, safe_url
from campaign.store.schema import VERSION_TABLE, current_revision, head_revision

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "QueryResult", "fetch_result", "run_query", "check_single_statement", "check_read_statement",
    "write_result", "FORMATS", "RELATIONS",
]

logger = logging.getLogger(__name__)

FORMATS = ("table", "csv", "json", "parquet")
#: Relations defined for a named campaign.
RELATIONS = (
    "points", "samples", "models", "chains", "steps", "validations", "posterior_summaries",
    "best_fits", "profiles", "shap_summaries",
)
MESSAGE_LIMIT = 300
#: First keywords of read statements, per backend.
READ_KEYWORDS = {
    "sqlite": ("SELECT", "WITH", "VALUES", "EXPLAIN"),
    "postgresql": ("SELECT", "WITH", "VALUES", "EXPLAIN", "TABLE"),
}
#: JSON has no NaN or infinity, so write_result writes these strings (as JavaScript's Number() parses them).
JSON_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}

_MODEL_COLUMNS = (
    "m.id", "m.version", "p.version AS parent_version", "m.training_mode", "m.n_train", "m.n_low",
    "m.last_point_id", "m.chi2_min", "m.delta_chi2", "m.training_seconds", "m.metrics",
    "m.hyperparameters", "m.created_at", "m.created_by",
)
_CHAIN_COLUMNS = (
    "c.id", "m.version AS model_version", "c.status", "c.seed", "c.n_walkers", "c.n_steps",
    "c.burn_in", "c.thin", "c.acceptance_fraction", "c.tau", "c.converged", "c.sampling_seconds",
    "c.settings", "c.created_at", "c.created_by", "c.finished_at",
)


@dataclass(frozen=True)
class QueryResult:
    """Rows of a query as a frame, with the cells that are SQL NULL.

    Attributes:
        frame: One column per selected column. NULL is NaN in number columns,
            like a NaN value, so only ``nulls`` distinguishes the two.
        nulls: Boolean array, shape (rows, columns): True where the database
            returned NULL.
    """

    frame: pd.DataFrame
    nulls: np.ndarray


def run_query(sql: str, url: str | None = None, campaign: str | None = None) -> pd.DataFrame:
    """Run one read-only SQL statement and return its rows.

    Args:
        sql: One SQL statement; a trailing semicolon is allowed.
        url: Database URL (see :func:`campaign.store.engine.resolve_url`).
        campaign: Campaign name; when given, ``points``, ``samples``,
            ``models`` and ``chains`` show only this campaign's rows.

    Returns:
        The result, one column per selected column. On SQLite a NaN chi2 is
        stored as the text ``'NaN'``; it is returned as a float NaN. In number
        columns NULL is NaN too; :func:`fetch_result` distinguishes them.

    Raises:
        ConfigError: The SQL is empty, has more than one statement, is not a
            read statement, or the database rejects it. The message contains
            the database's reason, and for an unknown column it lists the
            known columns.
        NotFoundError: No campaign has this name.
        SchemaError: The database has no campaign schema or an outdated one.
    """
    return fetch_result(sql, url, campaign).frame


def fetch_result(sql: str, url: str | None = None, campaign: str | None = None) -> QueryResult:
    """Run one read-only SQL statement; like :func:`run_query`, but also mark the NULL cells."""
    statement = check_single_statement(sql)
    url = resolve_url(url)
    dialect = sa.engine.make_url(url).get_backend_name()
    check_read_statement(statement, dialect)
    engine = create_engine(url, read_only=dialect == "sqlite")
    logger.info("running a read-only query on %s", safe_url(url))
    try:
        with engine.connect() as connection:
            _check_schema(connection)
            if campaign is not None:
                _create_campaign_views(connection, campaign)
            _make_read_only(connection)
            try:
                result = connection.exec_driver_sql(_escape_percent(statement, dialect))
                columns = list(result.keys())
                rows = result.fetchall() if result.returns_rows else []
            except sa.exc.DBAPIError as exc:
                raise _translate_error(exc, connection, statement, campaign is not None) from None
            finally:
                connection.rollback()
    finally:
        engine.dispose()
    nulls = np.array([[value is None for value in row] for row in rows], dtype=bool).reshape(len(rows), len(columns))
    return QueryResult(_to_frame(columns, rows), nulls)


def check_single_statement(sql: str) -> str:
    """Return ``sql`` without trailing semicolons, or raise if it has several statements.

    Semicolons inside string literals, quoted identifiers and comments do
    not count.

    Raises:
        ConfigError: The SQL is empty or contains a second statement.
    """
    text = sql.strip()
    end = _statement_end(text)
    rest = text[end + 1:] if end is not None else ""
    if end is not None and _strip_comments(rest).strip(" \t\r\n;"):
        raise ConfigError(
            "only one SQL statement is allowed, but the query continues after a semicolon: "
            f"{_shorten(rest.strip())!r}; remove the second statement"
        )
    statement = text[:end] if end is not None else text
    if not _strip_comments(statement).strip():
        raise ConfigError("the SQL query is empty; give one statement, e.g. \"SELECT * FROM points LIMIT 5\"")
    return statement


def check_read_statement(statement: str, dialect: str) -> None:
    """Raise unless the statement's first keyword starts a read statement.

    Comments, whitespace and opening parentheses before the keyword are
    skipped. A write nested in a WITH or EXPLAIN statement passes this check,
    and the read-only connection rejects it.

    Args:
        statement: One SQL statement.
        dialect: ``sqlite`` or ``postgresql``.

    Raises:
        ConfigError: The first keyword is not in :data:`READ_KEYWORDS`.
    """
    allowed = READ_KEYWORDS[dialect]
    text = _strip_comments(statement).lstrip(" \t\r\n(")
    match = re.match(r"[A-Za-z_]+|\S+", text)
    keyword = match.group(0).upper() if match else ""
    if keyword in allowed:
        return
    raise ConfigError(
        f"only read queries are allowed, but this statement starts with {_shorten(keyword)!r}; "
        f"start it with {', '.join(allowed[:-1])} or {allowed[-1]}"
    )


def write_result(result: QueryResult, fmt: str, path: str | Path | None = None) -> str | None:
    """Render a query result as csv or json text, or write it to a file.

    NULL and NaN stay distinct. csv writes NULL as an empty cell and NaN,
    inf, -inf as ``NaN``, ``inf``, ``-inf``. json writes NULL as null and
    NaN, inf, -inf as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``,
    because JSON numbers cannot be NaN or infinite. parquet stores NULL as
    null and NaN as a float NaN.

    Args:
        result: The rows from :func:`fetch_result`.
        fmt: ``csv``, ``json`` (a list of row objects) or ``parquet`` (needs
            ``path``). The aligned table format belongs to the command line.
        path: Output file; the text is returned when None.

    Raises:
        ConfigError: Unknown format, or parquet without a file.
    """
    if fmt == "parquet":
        if path is None:
            raise ConfigError("--format parquet writes binary data; give a file with --output FILE")
        _write_parquet(result, path)
        return None
    if fmt == "csv":
        text = _mark_non_finite(result, {"nan": "NaN"}).to_csv(index=False)
    elif fmt == "json":
        frame = _mark_non_finite(result, JSON_NON_FINITE)
        text = frame.to_json(orient="records", date_format="iso", indent=1) + "\n"
    else:
        raise ConfigError(f"unknown output format {fmt!r}; choose one of csv, json, parquet")
    if path is None:
        return text
    Path(path).write_text(text)
    return None


def _non_finite_cells(result: QueryResult, position: int) -> np.ndarray | None:
    """Return a mask of the NaN and infinite values (not NULL) of one column, or None when it has none."""
    column = result.frame.iloc[:, position]
    if not _is_float_column(column):
        return None
    values = column.to_numpy(dtype=float)
    mask = ~np.isfinite(values) & ~result.nulls[:, position]
    return mask if mask.any() else None


def _is_float_column(column: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.is_float_dtype(column.dtype)


def _mark_non_finite(result: QueryResult, names: dict[str, str]) -> pd.DataFrame:
    """Replace NaN and infinite values by the strings in ``names`` (keys nan, inf, -inf).

    A column with such a value becomes an object column, NULL cells become
    None, and values without a name in ``names`` stay floats.
    """
    frame = result.frame.copy()
    for position in range(frame.shape[1]):
        mask = _non_finite_cells(result, position)
        if mask is None:
            continue
        values = frame.iloc[:, position].to_numpy(dtype=float).astype(object)
        for index in np.flatnonzero(mask):
            values[index] = names.get(str(values[index]), values[index])
        values[result.nulls[:, position]] = None
        frame.isetitem(position, values)
    return frame


def _write_parquet(result: QueryResult, path: str | Path) -> None:
    """Write parquet with NULL as null and NaN as NaN (pyarrow turns every NaN into null by default)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(result.frame, preserve_index=False)
    for position in range(result.frame.shape[1]):
        if _non_finite_cells(result, position) is None:
            continue
        values = result.frame.iloc[:, position].to_numpy(dtype=float)
        column = pa.array(values, mask=result.nulls[:, position], from_pandas=False)
        table = table.set_column(position, table.field(position), column)
    pq.write_table(table, path)


def _statement_end(text: str) -> int | None:
    """Return the index of the first semicolon outside quotes and comments."""
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in ("'", '"'):
            close = text.find(char, i + 1)
            # A doubled quote inside a literal is an escaped quote; the scan
            # just continues after it, which treats it as two adjacent literals.
            i = n if close < 0 else close + 1
        elif text.startswith("--", i):
            close = text.find("\n", i)
            i = n if close < 0 else close + 1
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            i = n if close < 0 else close + 2
        elif char == ";":
            return i
        else:
            i += 1
    return None


def _strip_comments(text: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?(\*/|$)", " ", text, flags=re.S)


def _escape_percent(statement: str, dialect: str) -> str:
    # psycopg treats % as a placeholder marker even without parameters.
    return statement.replace("%", "%%") if dialect == "postgresql" else statement


def _check_schema(connection: Connection) -> None:
    revision = current_revision(connection)
    connection.rollback()
    if revision is None:
        raise SchemaError(
            f"the database {safe_url(connection.engine.url)} has no campaign schema "
            f"(no {VERSION_TABLE} table); create a campaign first or check the --db URL"
        )
    if revision != head_revision():
        raise SchemaError(
            f"the database schema is at revision {revision}, but this campaign expects "
            f"{head_revision()}; run `campaign db upgrade` (or upgrade campaign if the database is newer)"
        )


def _create_campaign_views(connection: Connection, name: str) -> None:
    if connection.dialect.name == "postgresql":
        # A role with default_transaction_read_only may still create temporary
        # views (with the TEMPORARY privilege) once it requests a read-write transaction.
        connection.rollback()
        connection.exec_driver_sql("SET TRANSACTION READ WRITE")
    row = connection.execute(
        sa.text("SELECT id, view_suffix FROM campaigns WHERE name = :name"), {"name": name}
    ).first()
    if row is None:
        names = connection.execute(sa.text("SELECT name FROM campaigns ORDER BY name LIMIT 20")).scalars().all()
        connection.rollback()
        known = ", ".join(names) if names else "none yet"
        raise NotFoundError(f"campaign {name!r} not found; existing campaigns: {known}")
    campaign_id, suffix = int(row.id), row.view_suffix

    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        connection.exec_driver_sql("PRAGMA query_only=OFF")
    main = "main." if sqlite else ""
    # PostgreSQL binds a view's tables when it is created, so this view comes
    # before the temporary view "chains" hides the table.
    definitions = {
        "posterior_summaries": (
            f"SELECT t.* FROM {main}posterior_summaries t JOIN {main}chains c ON c.id = t.chain_id "
            f"WHERE c.campaign_id = {campaign_id}"
        ),
        "points": f'SELECT * FROM {main}"points_{suffix}"',
        "samples": f'SELECT * FROM {main}"samples_{suffix}"',
        "models": (
            f"SELECT {', '.join(_MODEL_COLUMNS)} FROM {main}model_versions m "
            f"LEFT JOIN {main}model_versions p ON p.id = m.parent_id WHERE m.campaign_id = {campaign_id}"
        ),
        "chains": (
            f"SELECT {', '.join(_CHAIN_COLUMNS)} FROM {main}chains c "
            f"LEFT JOIN {main}model_versions m ON m.id = c.model_version_id WHERE c.campaign_id = {campaign_id}"
        ),
        "steps": f"SELECT * FROM {main}steps WHERE campaign_id = {campaign_id}",
        "validations": f"SELECT * FROM {main}validations WHERE campaign_id = {campaign_id}",
    }
    for table in ("best_fits", "profiles", "shap_summaries"):
        definitions[table] = (
            f"SELECT t.*, m.version AS model_version FROM {main}{table} t "
            f"JOIN {main}model_versions m ON m.id = t.model_version_id WHERE m.campaign_id = {campaign_id}"
        )
    for relation, select in definitions.items():
        connection.exec_driver_sql(f"CREATE TEMP VIEW {relation} AS {select}")
    if sqlite:
        connection.exec_driver_sql("PRAGMA query_only=ON")
    else:
        # PostgreSQL refuses CREATE in a read-only transaction, so the views
        # are committed first; temporary views live until the connection closes.
        connection.commit()


def _make_read_only(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.rollback()
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
    else:
        # The read-only engine sets this on connect; repeat it so that the
        # guarantee sits next to the statement it protects.
        connection.exec_driver_sql("PRAGMA query_only=ON")


def _translate_error(
    exc: sa.exc.DBAPIError, connection: Connection, statement: str, campaign_views: bool
) -> ConfigError:
    message = _database_message(exc)
    lowered = message.lower()
    if connection.dialect.name == "postgresql":
        # An error aborts a PostgreSQL transaction, and the catalog queries
        # below need a fresh one. The temporary views were committed, so they
        # stay. On SQLite a rollback would drop them, so the transaction stays open.
        connection.rollback()
    logger.info("query rejected by the database: %s", message)
    if "read-only" in lowered or "readonly" in lowered:
        return ConfigError(
            f"campaign query is read-only and the database rejected a write: {message}; "
            "use SELECT statements only"
        )
    if "no such column" in lowered or ("column" in lowered and "does not exist" in lowered):
        columns = _known_columns(connection, statement, campaign_views)
        listing = "; ".join(f"{relation}: {', '.join(names)}" for relation, names in columns.items())
        return ConfigError(f"unknown column ({message}); known columns are {listing}")
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        relations = ", ".join(RELATIONS if campaign_views else _relation_names(connection))
        return ConfigError(f"unknown table ({message}); known tables and views: {relations}")
    if "syntax error" in lowered:
        return ConfigError(f"SQL syntax error: {message}")
    return ConfigError(f"the database rejected the query: {message}")


def _database_message(exc: sa.exc.DBAPIError) -> str:
    """Shorten the driver's message to its first line."""
    text = str(exc.orig).strip()
    lines = text.splitlines()
    message = lines[0] if lines else type(exc.orig).__name__
    return _shorten(message)


def _shorten(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "..."


def _relation_names(connection: Connection) -> list[str]:
    inspector = sa.inspect(connection)
    names = set(inspector.get_table_names()) | set(inspector.get_view_names())
    return sorted(names - {VERSION_TABLE})


def _known_columns(connection: Connection, statement: str, campaign_views: bool) -> dict[str, list[str]]:
    """List the columns of the relations the statement names (all relations when it names none)."""
    relations = list(RELATIONS) if campaign_views else _relation_names(connection)
    words = {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", statement)}
    mentioned = [r for r in relations if r.lower() in words] or relations
    return {r: _columns_of(connection, r) for r in mentioned}


def _columns_of(connection: Connection, relation: str) -> list[str]:
    quoted = '"' + relation.replace('"', '""') + '"'
    result = connection.exec_driver_sql(f"SELECT * FROM {quoted} WHERE 1 = 0")
    columns = list(result.keys())
    result.close()
    return columns


def _to_frame(columns: list[str], rows: list) -> pd.DataFrame:
    import pandas as pd  # pandas is imported on use, to keep --help fast

    frame = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    for column in frame.columns:
        if frame[column].dtype == object and _is_number_column(frame[column]):
            frame[column] = frame[column].map(lambda v: math.nan if v is None or v == "NaN" else float(v))
    return frame


def _is_number_column(values: pd.Series) -> bool:
    """Tell whether a column contains numbers apart from SQLite's 'NaN' text (see ExactFloat)."""
    present = [v for v in values if v is not None]
    has_nan_text = any(v == "NaN" for v in present)
    numbers = all(
        (isinstance(v, (int, float)) and not isinstance(v, bool)) or v == "NaN" for v in present
    )
    return has_nan_text and numbers
