"""The Python interface: create, open and inspect campaigns.

The command line is a thin layer over these functions::

    import campaign
    fit = campaign.open_campaign("gaussian-4d", "sqlite:///campaign.db")
    df = fit.points()
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import sqlalchemy as sa

from campaign.config import CampaignSpec
from campaign.errors import ConfigError
from campaign.likelihood import check_likelihood
from campaign.store import Store, models
from campaign.store.campaigns import (
    best_chi2, find_campaign, insert_campaign, list_campaigns, spec_of, status_counts, update_campaign as _update_row,
)
from campaign.store.points import PointArrays, load_points
from campaign.trust import allow, reference_key

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Campaign", "create_campaign", "update_campaign", "allow_likelihood", "open_campaign", "campaigns", "query", "import_bundle"]

logger = logging.getLogger(__name__)


class Campaign:
    """A handle on one stored campaign.

    Attributes:
        store: The database it lives in.
        id: Its primary key.
        spec: Its validated definition (space, likelihood, settings).
    """

    def __init__(self, store: Store, row: models.Campaign):
        self.store = store
        self.id = row.id
        self.spec = spec_of(row)
        self._row = row

    def __repr__(self) -> str:
        return f"Campaign({self.name!r}, {self.store!r})"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def space(self):
        return self.spec.space

    @property
    def settings(self):
        return self.spec.settings

    def arrays(self, statuses: Sequence[str] = ("done",), *, all_versions: bool = False) -> PointArrays:
        """Load points as numpy arrays (ids, x, chi2); the fast path for training.

        Only points of the campaign's current likelihood version are loaded,
        unless ``all_versions`` is set.
        """
        version = None if all_versions else self.spec.likelihood.version
        with self.store.engine.connect() as connection:
            return load_points(connection, self.id, self.space.dim, statuses, version)

    def points(self, status: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Return points as a DataFrame with one column per parameter.

        Args:
            status: Only points with this status (or these statuses); all when None.
        """
        table = models.Point.__table__
        query = sa.select(table).where(table.c.campaign_id == self.id).order_by(table.c.id)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            query = query.where(table.c.status.in_(statuses))
        with self.store.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        names = list(self.space.names)
        x = np.frombuffer(b"".join(r["x"] for r in rows), dtype="<f8").reshape(len(rows), len(names))
        import pandas as pd

        frame = pd.DataFrame(x, columns=names)
        frame.insert(0, "id", [r["id"] for r in rows])
        skip = {"x", "params", "key", "campaign_id", "id"}
        for column in table.c.keys():
            if column not in skip:
                frame[column] = [r[column] for r in rows]
        return frame.set_index("id")

    def query(self, sql: str) -> pd.DataFrame:
        """Run one read-only SQL statement on this campaign's relations.

        ``points``, ``samples``, ``models`` and ``chains`` show only this
        campaign; see :func:`campaign.sql.run_query`.
        """
        from campaign.sql import run_query

        return run_query(sql, self.store.url, campaign=self.name)

    def export(self, path: str, *, overwrite: bool = False):
        """Write this campaign to a self-contained SQLite bundle; see :func:`campaign.bundle.export_bundle`."""
        from campaign.bundle import export_bundle

        return export_bundle(self.name, path, self.store.url, overwrite=overwrite)

    def report(self, path: str):
        """Write the self-contained HTML report; see :func:`campaign.report.write_report`."""
        from campaign.report import write_report

        return write_report(self, path)

    def status_counts(self) -> dict[str, int]:
        with self.store.transaction() as session:
            return status_counts(session, self.id)

    def model(self, version: int | None = None):
        """Load a trained surrogate (:class:`campaign.surrogate.SurrogateModel`); the newest when ``version`` is None.

        Raises:
            NotFoundError: No such model version; the message lists the existing ones.
        """
        from campaign.surrogate.registry import load_model

        with self.store.transaction() as session:
            return load_model(session, self.id, self.space, version)[1]

    def step(self, **options):
        """Run one active-learning step; see :func:`campaign.scheduler.run_step` for the options."""
        from campaign.scheduler import run_step

        return run_step(self, **options)

    def run(self, **options):
        """Repeat active-learning steps; see :func:`campaign.scheduler.run_steps` for the options."""
        from campaign.scheduler import run_steps

        return run_steps(self, **options)

    def describe(self) -> dict[str, Any]:
        """Collect what ``campaign show`` prints: definition, counts and best chi2."""
        with self.store.transaction() as session:
            row = session.get(models.Campaign, self.id)
            return {
                "name": row.name,
                "description": row.description,
                "created_by": row.created_by,
                "created_host": row.created_host,
                "created_at": row.created_at,
                "parameters": self.space.to_dict(),
                "likelihood": self.spec.likelihood.to_dict(),
                "settings": self.settings.to_dict(),
                "delta_chi2": self.settings.low_region_width(self.space.dim),
                "counts": status_counts(session, self.id),
                "best_chi2": best_chi2(session, self.id, self.spec.likelihood.version),
                "views": [f"points_{row.view_suffix}", f"samples_{row.view_suffix}"],
            }

    def compile(self, version: int | None = None, backend: str = "numba") -> dict:
        """Compile the regressor and classifier of a model version (newest when None) into the local cache."""
        from campaign.surrogate.compiled import compile_surrogate
        from campaign.surrogate.registry import load_model

        with self.store.transaction() as session:
            version_row, model = load_model(session, self.id, self.space, version)
        surrogate = compile_surrogate(model, backend, threads=self.settings.threads)
        return {
            "model_version": version_row.version,
            "backend": surrogate.backend,
            "seconds": surrogate.regressor.compile_seconds + surrogate.classifier.compile_seconds,
            "hashes": {"regressor": surrogate.regressor.hash, "classifier": surrogate.classifier.hash},
        }

    def sample(self, **options) -> dict:
        """Sample the surrogate posterior; see :func:`campaign.sampling.sample_campaign` for the options."""
        from campaign.sampling import sample_campaign

        return sample_campaign(self, **options)

    def chain(self, chain_id: int | None = None, as_inference_data: bool = False):
        """Return a chain's stored samples (the latest finished chain when None).

        Returns:
            A DataFrame with columns iteration, walker, one per parameter, and
            log_prob; or an ``arviz.InferenceData`` (walkers as chains) when
            ``as_inference_data`` is set.
        """
        from campaign.store.chains import find_chain, load_samples

        with self.store.transaction() as session:
            chain_row = find_chain(session, self.id, chain_id)
            iteration, walker, x, log_prob = load_samples(session, chain_row.id, self.space.dim)
        import pandas as pd

        frame = pd.DataFrame(x, columns=list(self.space.names))
        frame.insert(0, "walker", walker)
        frame.insert(0, "iteration", iteration)
        frame["log_prob"] = log_prob
        if not as_inference_data:
            return frame
        try:
            import arviz
        except ImportError:
            raise ConfigError("as_inference_data needs arviz, which is not installed; run `pip install arviz`") from None
        n_walkers = chain_row.n_walkers
        posterior = {
            name: frame[name].to_numpy().reshape(-1, n_walkers).T for name in self.space.names
        }
        return arviz.from_dict(posterior=posterior,
                               sample_stats={"lp": log_prob.reshape(-1, n_walkers).T})

    def validate(self, n: int = 50, **options) -> dict:
        """Evaluate the true likelihood at posterior samples and the best fit; see :func:`campaign.validation.validate_campaign`."""
        from campaign.validation import validate_campaign

        return validate_campaign(self, n, **options)

    def explain(self, version: int | None = None, plots: str | None = None) -> dict:
        """Summarize SHAP values of a model version; see :func:`campaign.explain.explain_campaign`."""
        from campaign.explain import explain_campaign

        return explain_campaign(self, version, plots)


def create_campaign(spec: CampaignSpec, url: str | None = None, *, check: bool = True) -> Campaign:
    """Store a new campaign.

    Args:
        spec: A validated definition (see :func:`campaign.config.load_campaign_file`).
        url: Database URL.
        check: Import the likelihood (or find the command) before writing anything.

    Raises:
        ConfigError: The likelihood cannot be loaded.
        ConflictError: The name is taken.
    """
    if check:
        check_likelihood(spec.likelihood, spec.space.names)
    store = Store(url)
    with store.transaction() as session:
        row = insert_campaign(session, spec)
    logger.info("created campaign %s (id %d)", spec.name, row.id)
    allow(spec.likelihood)
    return Campaign(store, row)


def update_campaign(
    spec: CampaignSpec, url: str | None = None, *, force: bool = False, check: bool = True
) -> tuple[Campaign, dict[str, list[str]]]:
    """Replace the definition of the stored campaign ``spec.name``.

    Settings and the description may always change. Changing bounds, priors
    or the likelihood after points exist needs ``force``; adding, removing
    or reordering parameters after points exist is rejected.

    Returns:
        The updated campaign and the changes, as readable lines per section.

    Raises:
        ConflictError: A guarded change without ``force``; the message has the diff.
    """
    if check:
        check_likelihood(spec.likelihood, spec.space.names)
    store = Store(url)
    with store.transaction() as session:
        row = find_campaign(session, spec.name)
        changes = _update_row(session, row, spec, force=force)
    if changes:
        logger.info("updated campaign %s: %s", spec.name, ", ".join(changes))
    allow(spec.likelihood)
    return open_campaign(spec.name, store=store), changes


def allow_likelihood(name: str, url: str | None = None) -> tuple[str, bool]:
    """Allow this machine to run the likelihood of campaign ``name``.

    Returns:
        The allow-list key of the reference on this machine, and False when it was allowed already.
    """
    fit = open_campaign(name, url)
    return reference_key(fit.spec.likelihood), allow(fit.spec.likelihood)


def open_campaign(name: str, url: str | None = None, *, store: Store | None = None) -> Campaign:
    """Open a stored campaign by name.

    Raises:
        NotFoundError: No campaign has this name.
    """
    store = store or Store(url)
    with store.transaction() as session:
        row = find_campaign(session, name)
    return Campaign(store, row)


def campaigns(url: str | None = None) -> list[dict]:
    """Summarize all campaigns in a database."""
    store = Store(url)
    with store.transaction() as session:
        return list_campaigns(session)


def query(sql: str, url: str | None = None, campaign: str | None = None) -> pd.DataFrame:
    """Run one read-only SQL statement; see :func:`campaign.sql.run_query`."""
    from campaign.sql import run_query

    return run_query(sql, url, campaign=campaign)


def import_bundle(path: str, url: str | None = None, into: str | None = None):
    """Load a bundle into a database in one transaction; see :func:`campaign.bundle.import_bundle`."""
    from campaign.bundle import import_bundle as load_bundle

    return load_bundle(path, url, into=into)
