"""A self-contained HTML report of a campaign, with the plots embedded as PNG.

Sections: definition, progress over steps, model metrics per version, SHAP
values, corner plot and posterior table, profile likelihoods and validation
residuals. A section whose data is missing says "not available yet". The
page loads no scripts, styles or images from elsewhere.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from campaign import plots
from campaign.errors import ConfigError
from campaign.profile import profile_caution
from campaign.store import models
from campaign.validation import validation_caution

__all__ = ["write_report", "render_report"]

logger = logging.getLogger(__name__)

NOT_AVAILABLE = "not available yet"
#: Wilks thresholds of a 1-D profile: delta chi2 at 68% and 95% confidence.
PROFILE_LEVELS = (1.0, 3.84)

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { background: #f0f0f0; }
td.text { text-align: left; }
p.missing { color: #888; font-style: italic; }
img { max-width: 100%; }
"""


def write_report(fit, path: str | Path) -> Path:
    """Write the HTML report of campaign ``fit`` (a :class:`campaign.api.Campaign`) to ``path``.

    Raises:
        ConfigError: The directory of ``path`` does not exist, or ``path`` is
            a directory. Like matplotlib's ``savefig``, no directory is created.
    """
    path = Path(path)
    _check_output_path(path)
    page = render_report(fit)
    path.write_text(page, encoding="utf-8")
    logger.info("wrote the report of campaign %s to %s (%d bytes)", fit.name, path, len(page))
    return path


def _check_output_path(path: Path) -> None:
    directory = path.parent
    if not directory.is_dir():
        raise ConfigError(
            f"cannot write the report to {path}: the directory {directory} does not exist; "
            "create it first or choose another output file"
        )
    if path.is_dir():
        raise ConfigError(f"cannot write the report to {path}: it is a directory; give an HTML file name")


def render_report(fit) -> str:
    """Return the report of campaign ``fit`` as one HTML page."""
    with fit.store.transaction() as session:
        data = _load(session, fit)
    sections = [
        ("Definition", _definition(fit)),
        ("Progress", _progress(data)),
        ("Model versions", _model_metrics(data)),
        ("SHAP values", _shap(data, fit)),
        ("Posterior", _posterior(data, fit)),
        ("Profile likelihoods", _profiles(data)),
        ("Validation", _validation(data)),
    ]
    body = "\n".join(f"<section><h2>{html.escape(title)}</h2>\n{content}</section>" for title, content in sections)
    title = html.escape(f"Campaign {fit.name}")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{title}</title><style>{STYLE}</style></head>\n"
        f"<body><h1>{title}</h1>\n{body}\n</body></html>\n"
    )


def _load(session, fit) -> dict[str, Any]:
    """Read what the sections need: points, evaluations per step, model versions and the newest summaries."""
    campaign_id = fit.id
    step_counts = session.execute(
        sa.select(models.Point.step, sa.func.count())
        .where(models.Point.campaign_id == campaign_id, models.Point.status == "done")
        .group_by(models.Point.step)
    ).all()
    versions = session.scalars(
        sa.select(models.ModelVersion).where(models.ModelVersion.campaign_id == campaign_id)
        .order_by(models.ModelVersion.version)
    ).all()
    version_ids = [v.id for v in versions]
    profiles = _newest_profiles(session, version_ids)
    return {
        "name": fit.name,
        "arrays": fit.arrays(statuses=("done",)),
        "step_counts": sorted(((-1 if s is None else s), n) for s, n in step_counts),
        "versions": [(v.version, v.n_train, v.metrics, v.training_seconds) for v in versions],
        "shap": _newest(session, models.ShapSummary, version_ids),
        "profiles": profiles,
        "profile_caution": _profile_caution(versions, profiles),
        "chain": _load_chain(session, campaign_id, fit.space.dim),
        "validation": _load_validation(session, campaign_id),
    }


def _load_chain(session, campaign_id: int, dim: int) -> dict | None:
    """Read the newest converged chain (else the newest chain) with its samples, shape (n, dim)."""
    chain = session.scalars(
        sa.select(models.Chain).where(models.Chain.campaign_id == campaign_id)
        .order_by(models.Chain.converged.desc(), models.Chain.id.desc()).limit(1)
    ).first()
    if chain is None:
        return None
    samples = session.execute(
        sa.select(models.ChainSample.x).where(models.ChainSample.chain_id == chain.id)
    ).scalars().all()
    summaries = session.scalars(
        sa.select(models.PosteriorSummary).where(models.PosteriorSummary.chain_id == chain.id)
    ).all()
    return {
        "id": chain.id, "acceptance": chain.acceptance_fraction, "tau": chain.tau, "converged": chain.converged,
        "samples": np.frombuffer(b"".join(samples), dtype="<f8").reshape(len(samples), dim),
        "summaries": {s.parameter: s for s in summaries},
    }


def _load_validation(session, campaign_id: int) -> dict | None:
    """Read the newest validation with the true chi2 of its points (NaN where missing)."""
    validation = session.scalars(
        sa.select(models.Validation).where(models.Validation.campaign_id == campaign_id)
        .order_by(models.Validation.id.desc()).limit(1)
    ).first()
    if validation is None:
        return None
    ids = list(validation.point_ids)
    chi2 = dict(session.execute(
        sa.select(models.Point.id, models.Point.chi2).where(models.Point.id.in_([i for i in ids if i is not None]))
    ).all())
    return {
        "true": np.array([_number(chi2.get(i)) for i in ids], dtype=float),
        "surrogate": np.array([_number(v) for v in validation.surrogate_chi2], dtype=float),
        "statistics": validation.statistics,
    }


def _newest(session, model: type, version_ids: list[int]):
    if not version_ids:
        return None
    return session.scalars(
        sa.select(model).where(model.model_version_id.in_(version_ids)).order_by(model.id.desc()).limit(1)
    ).first()


def _profile_caution(versions: list, profiles: list) -> str | None:
    if not profiles:
        return None
    version = next(v for v in versions if v.id == profiles[0].model_version_id)
    return profile_caution(version.metrics, version.version)


def _newest_profiles(session, version_ids: list[int]) -> list:
    newest = _newest(session, models.Profile, version_ids)
    if newest is None:
        return []
    return session.scalars(
        sa.select(models.Profile).where(models.Profile.model_version_id == newest.model_version_id)
        .order_by(models.Profile.id)
    ).all()


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


# Sections: each returns an HTML fragment.


def _definition(fit) -> str:
    info = fit.describe()
    rows = [
        [name, p["low"], p["high"], p["scale"], next(iter(p["prior"]))] for name, p in info["parameters"].items()
    ]
    like = info["likelihood"]
    source = like.get("python") or " ".join(like.get("command", []))
    settings = ", ".join(f"{k}={v}" for k, v in info["settings"].items())
    counts = ", ".join(f"{n} {status}" for status, n in info["counts"].items())
    return (
        f"<p>{html.escape(info['description'] or '')}</p>"
        f"<p>Created by {html.escape(str(info['created_by']))} on {html.escape(str(info['created_host']))} "
        f"at {html.escape(str(info['created_at']))}.</p>"
        + _table(["parameter", "low", "high", "scale", "prior"], rows)
        + f"<p>Likelihood: <code>{html.escape(source)}</code> (returns {html.escape(like['returns'])}, "
        f"version {html.escape(str(like['version']))}).</p>"
        f"<p>Settings: {html.escape(settings)}.</p><p>Points: {html.escape(counts)}. "
        f"Best chi2: {_format(info['best_chi2'])}.</p>"
    )


def _progress(data: dict) -> str:
    chi2 = data["arrays"].chi2
    finite = np.where(np.isfinite(chi2), chi2, np.inf)
    if not np.isfinite(finite).any():
        return _missing("evaluated points with a finite chi2")
    pyplot = plots._pyplot()
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(10, 3.8))
    best = np.minimum.accumulate(finite)
    shown = np.isfinite(best)
    left.plot(np.arange(1, len(best) + 1)[shown], best[shown], drawstyle="steps-post")
    left.set_xlabel("evaluations")
    left.set_ylabel("best chi2")
    labels = ["none" if s < 0 else str(s) for s, _ in data["step_counts"]]
    right.bar(labels, [n for _, n in data["step_counts"]])
    right.set_xlabel("step (0: initial design)")
    right.set_ylabel("evaluations")
    return _image(figure, "best chi2 against evaluations, and evaluations per step")


def _model_metrics(data: dict) -> str:
    if not data["versions"]:
        return _missing("model versions")
    keys = sorted({k for _, _, metrics, _ in data["versions"] for k, v in metrics.items() if _is_number(v)})
    rows = [[version, n_train, *(metrics.get(k) for k in keys), seconds] for version, n_train, metrics, seconds in data["versions"]]
    content = _table(["version", "training points", *keys, "training seconds"], rows)
    if keys:
        pyplot = plots._pyplot()
        figure, axes = pyplot.subplots(figsize=(6, 3.5))
        versions = [v for v, *_ in data["versions"]]
        for key in keys:
            axes.plot(versions, [_number(m.get(key)) for _, _, m, _ in data["versions"]], marker="o", label=key)
        axes.set_xlabel("model version")
        axes.legend()
        content += _image(figure, "metrics per model version")
    return content


def _shap(data: dict, fit) -> str:
    summary = data["shap"]
    if summary is None:
        return _missing("SHAP summaries (run `campaign explain`)")
    names = list(fit.space.names)
    mean = np.array([_number(summary.mean_abs_shap.get(n)) for n in names])
    pyplot = plots._pyplot()
    order = np.argsort(mean)
    figure, axes = pyplot.subplots(figsize=(6, 0.4 * len(names) + 1.5))
    axes.barh([names[i] for i in order], mean[order])
    axes.set_xlabel("mean |SHAP value| (chi2)")
    content = _image(figure, "mean |SHAP value| per parameter")

    pairs = summary.mean_abs_interaction or {}
    if pairs and len(names) > 1:
        matrix = np.full((len(names), len(names)), np.nan)
        for pair, value in pairs.items():
            first, _, second = pair.partition(":")
            if first in names and second in names:
                i, j = names.index(first), names.index(second)
                matrix[i, j] = matrix[j, i] = _number(value)
        figure, axes = pyplot.subplots(figsize=(1.5 + 0.6 * len(names), 1 + 0.6 * len(names)))
        image = axes.imshow(matrix, cmap="viridis")
        axes.set_xticks(range(len(names)), names, rotation=90)
        axes.set_yticks(range(len(names)), names)
        figure.colorbar(image, ax=axes, label="mean |SHAP interaction| (chi2)")
        content += _image(figure, "mean |SHAP interaction| per pair of parameters")
    if summary.best_fit:
        shap = summary.best_fit.get("shap", summary.best_fit)
        content += "<p>SHAP values at the best fit:</p>" + _table(
            ["parameter", "SHAP value"], [[n, shap.get(n)] for n in names if n in shap]
        )
    return content


def _posterior(data: dict, fit) -> str:
    chain = data["chain"]
    if chain is None or len(chain["samples"]) == 0:
        return _missing("chains (run `campaign sample`)")
    names = list(fit.space.names)
    with tempfile.TemporaryDirectory(prefix="campaign-report-") as folder:
        path = plots.corner(chain["samples"], names, Path(folder) / "corner.png")
        content = _png(path.read_bytes(), "corner plot of the posterior samples")
    tau = ", ".join(_format(t) for t in chain["tau"]) if chain["tau"] else "-"
    content = (
        f"<p>Chain {chain['id']}: {len(chain['samples'])} samples, acceptance fraction "
        f"{_format(chain['acceptance'])}, tau {tau}, {'converged' if chain['converged'] else 'not converged'}.</p>"
        + content
    )
    summaries = chain["summaries"]
    if not summaries:
        return content + _missing("posterior summaries")
    rows = [
        [n, s.mean, s.std, s.median, s.q16, s.q84, s.q02_5, s.q97_5]
        for n in names if (s := summaries.get(n)) is not None
    ]
    return content + _table(["parameter", "mean", "std", "median", "16%", "84%", "2.5%", "97.5%"], rows)


def _profiles(data: dict) -> str:
    profiles = data["profiles"]
    if not profiles:
        return _missing("profile likelihoods")
    pyplot = plots._pyplot()
    figure, axes = pyplot.subplots(1, len(profiles), figsize=(3.5 * len(profiles), 3.2), squeeze=False)
    for ax, profile in zip(axes[0], profiles):
        chi2 = np.array([_number(v) for v in profile.chi2])
        ax.plot(profile.grid, chi2 - np.nanmin(chi2))
        for level in PROFILE_LEVELS:
            ax.axhline(level, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel(profile.parameter)
        ax.set_ylabel("delta chi2")
    content = _image(figure, "profile likelihoods with the 68% and 95% thresholds")
    rows = [[p.parameter, p.low_68, p.high_68, p.low_95, p.high_95] for p in profiles]
    content += _table(["parameter", "68% low", "68% high", "95% low", "95% high"], rows)
    if data["profile_caution"]:
        content += f"<p>{html.escape(data['profile_caution'])}</p>"
    return content


def _validation(data: dict) -> str:
    validation = data["validation"]
    if validation is None:
        return _missing("validations (run `campaign validate`)")
    true, surrogate = validation["true"], validation["surrogate"]
    both = np.isfinite(true) & np.isfinite(surrogate)
    content = _table(
        ["statistic", "value"], [[k, v] for k, v in sorted(validation["statistics"].items())]
    )
    caution = validation_caution(validation["statistics"], data["name"])
    if caution:
        content += f"<p>{html.escape(caution)}</p>"
    if not both.any():
        return content + _missing("finite residuals")
    pyplot = plots._pyplot()
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(10, 3.8))
    left.scatter(surrogate[both], true[both], s=10)
    low, high = float(min(true[both].min(), surrogate[both].min())), float(max(true[both].max(), surrogate[both].max()))
    left.plot([low, high], [low, high], "k--", linewidth=0.8)
    left.set_xlabel("surrogate chi2")
    left.set_ylabel("true chi2")
    right.hist(true[both] - surrogate[both], bins=20)
    right.set_xlabel("residual true - surrogate chi2")
    return content + _image(figure, "validation: true against surrogate chi2, and residuals")


# HTML helpers.


def _missing(what: str) -> str:
    return f'<p class="missing">{NOT_AVAILABLE}: no {html.escape(what)}.</p>'


def _image(figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plots._pyplot().close(figure)
    return _png(buffer.getvalue(), alt)


def _png(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<p><img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}"></p>'


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f'<td{"" if _is_number(v) else " class=text"}>{html.escape(_format(v))}</td>' for v in row
        ) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)
