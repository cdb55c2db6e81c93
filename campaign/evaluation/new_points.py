"""New points for a campaign: space-filling designs and CSV files."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from campaign.errors import ConfigError
from campaign.space import DESIGNS
from campaign.store import models
from campaign.store.points import insert_points

__all__ = ["add_design", "add_points_from_csv"]

logger = logging.getLogger(__name__)


def add_design(
    fit,
    n: int,
    method: str = "sobol",
    *,
    origin: str = "initial",
    step: int | None = None,
    seed: int | None = None,
) -> list[int]:
    """Add ``n`` pending points of a space-filling design and return their ids.

    Args:
        fit: An open :class:`campaign.api.Campaign`.
        n: Number of points.
        method: ``"sobol"`` (scrambled Sobol) or ``"lhs"`` (Latin hypercube),
            both from ``scipy.stats.qmc``.
        origin: Stored on each point.
        step: Active-learning step that asked for the points.
        seed: Seed of the design. By default it is derived from the campaign
            seed and the number of points already stored, so the first design
            of a campaign is reproducible and a second call draws new points.

    Raises:
        ConfigError: ``n`` is below 1 or ``method`` is unknown.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"invalid number of points {n!r}; give a positive integer")
    if method not in DESIGNS:
        raise ConfigError(f"unknown design {method!r}; choose one of {', '.join(DESIGNS)}")

    with fit.store.transaction() as session:
        campaign = session.get(models.Campaign, fit.id)
        if seed is None:
            stored = session.scalar(
                sa.select(sa.func.count()).select_from(models.Point).where(models.Point.campaign_id == fit.id)
            )
            seed = int(np.random.SeedSequence([fit.settings.seed, stored]).generate_state(1)[0])
        x = fit.space.design(int(n), method, seed=seed)
        ids = insert_points(session, campaign, x, origin, step=step)
    logger.info("campaign %s: added %d %s points (ids %d-%d)", fit.name, len(ids), method, ids[0], ids[-1])
    return ids


def add_points_from_csv(fit, path) -> list[int]:
    """Add the points of a CSV file and return their ids in file order.

    The header names the columns. Every parameter of the campaign needs a
    column. An optional ``chi2`` column contains values evaluated elsewhere:
    rows with a chi2 are stored as done (``nan``, ``inf`` and ``-inf`` are
    kept), rows with an empty chi2 cell are stored as pending. Other columns
    are stored as extra outputs of the done rows. All rows go in one
    transaction, so an invalid file adds nothing.

    Raises:
        ConfigError: The file is unreadable, a parameter column is missing,
            a value is not a number, or a point lies outside the box.
    """
    header, rows = _read_csv(Path(path))
    names = list(fit.space.names)
    missing = [name for name in names if name not in header]
    if missing:
        raise ConfigError(
            f"{path}: missing column(s) {', '.join(missing)}; the header must name every "
            f"parameter ({', '.join(names)}), optionally chi2 and output columns"
        )
    has_chi2 = "chi2" in header
    output_columns = [c for c in header if c not in names and c != "chi2"]
    if output_columns and not has_chi2:
        raise ConfigError(
            f"{path}: column(s) {', '.join(output_columns)} are neither parameters nor chi2; "
            "extra output columns need a chi2 column"
        )

    x = np.array([[_parse_number(row[name], path, line, name) for name in names] for line, row in rows], dtype=float)
    _check_in_box(fit.space, x, [line for line, _ in rows], path)
    chi2 = [_parse_chi2(row.get("chi2", ""), path, line) for line, row in rows]
    outputs = [{c: _parse_output(row[c]) for c in output_columns if row[c] != ""} or None for _, row in rows]

    done = [i for i, value in enumerate(chi2) if value is not None]
    pending = [i for i, value in enumerate(chi2) if value is None]
    ids = [0] * len(rows)
    with fit.store.transaction() as session:
        campaign = session.get(models.Campaign, fit.id)
        for i, point_id in zip(pending, insert_points(session, campaign, x[pending], "import")):
            ids[i] = point_id
        done_ids = insert_points(
            session, campaign, x[done], "import", chi2=[chi2[i] for i in done],
            outputs=[outputs[i] for i in done], executor="import",
        )
        for i, point_id in zip(done, done_ids):
            ids[i] = point_id
    logger.info("campaign %s: imported %d points from %s (%d done, %d pending)",
                fit.name, len(ids), path, len(done), len(pending))
    return ids


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            reader.fieldnames = header
            rows = [(reader.line_num, {k: (v or "").strip() for k, v in row.items()}) for row in reader]
    except OSError as exc:
        raise ConfigError(f"cannot read CSV file {str(path)!r}: {exc.strerror}") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid CSV: {exc}") from exc
    if not header:
        raise ConfigError(f"{path}: empty file; expected a header line with the parameter names")
    if len(set(header)) != len(header):
        raise ConfigError(f"{path}: duplicate column names in the header {header}")
    if not rows:
        raise ConfigError(f"{path}: no data rows below the header")
    for line, row in rows:
        if None in row:
            raise ConfigError(f"{path}, line {line}: more values than columns in the header")
    return header, rows


def _parse_number(text: str | None, path, line: int, column: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{path}, line {line}: column {column}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{path}, line {line}: column {column}: parameter values must be finite, got {text!r}")
    return value


def _parse_chi2(text: str, path, line: int) -> float | None:
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(
            f"{path}, line {line}: chi2 {text!r} is not a number; use a number, nan, inf, -inf, "
            "or leave the cell empty for a point still to evaluate"
        ) from None


def _parse_output(text: str) -> float | str:
    """Read an output cell as a number when it is a finite one, else keep the text (JSON has no NaN)."""
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _check_in_box(space, x: np.ndarray, lines: list[int], path) -> None:
    outside = np.flatnonzero(~space.contains(x))
    if len(outside) == 0:
        return
    i = outside[0]
    bad = [
        f"{name}={float(x[i, j])!r} not in [{float(space.low[j])!r}, {float(space.high[j])!r}]"
        for j, name in enumerate(space.names)
        if not space.low[j] <= x[i, j] <= space.high[j]
    ]
    raise ConfigError(
        f"{path}, line {lines[i]}: point outside the parameter box: {', '.join(bad)} "
        f"({len(outside)} row(s) outside in all); fix the values or widen the campaign's bounds"
    )
