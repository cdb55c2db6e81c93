"""A campaign with known contents for the query, bundle, report and API tests.

:func:`fill_campaign` writes every kind of row through the ORM models and
``insert_points``: points on a grid with chi2 = a^2 + b^2 (plus a NaN, an
infinite and a pending point), two model versions with real XGBoost
boosters, two steps, a chain with samples and its summaries, SHAP values,
profiles, a best fit and a validation.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from campaign import api
from campaign.config import parse_campaign
from campaign.store import models
from campaign.store.campaigns import find_campaign
from campaign.store.points import insert_points

NAMES = ("a", "b")
GRID = np.array([[a, b] for a in (-2.0, -1.0, 0.0, 1.0, 2.0) for b in (-1.0, 0.0, 1.0)])
SAMPLE_SEED = 7
N_WALKERS, N_ITERATIONS = 4, 50


@dataclass
class Filled:
    """What :func:`fill_campaign` wrote, for the assertions."""

    name: str
    n_points: int
    n_done: int
    boosters: dict[tuple[int, str], bytes]
    samples: np.ndarray


def campaign_spec(name: str = "toy", low_b: float = -5.0):
    return parse_campaign({
        "name": name,
        "description": "quadratic bowl",
        "parameters": {"a": {"low": -5, "high": 5}, "b": {"low": low_b, "high": 5}},
        "likelihood": {"python": "tests/likelihoods/quadratic.py:chi2", "version": "1"},
    })


@functools.lru_cache(maxsize=None)
def train_booster(seed: int) -> bytes:
    """Train a small real XGBoost regressor on the grid and return its UBJSON bytes.

    Training is deterministic for a seed with one thread, so the bytes are cached.
    """
    chi2 = (GRID ** 2).sum(axis=1)
    booster = xgb.train(
        {"max_depth": 2, "eta": 0.5, "nthread": 1, "seed": seed},
        xgb.DMatrix(GRID, label=chi2, feature_names=list(NAMES)),
        num_boost_round=5,
    )
    return bytes(booster.save_raw("ubj"))


def fill_campaign(url: str, name: str = "toy") -> Filled:
    """Create campaign ``name`` in ``url`` and fill every table with known values."""
    fit = api.create_campaign(campaign_spec(name), url, check=False)
    boosters: dict[tuple[int, str], bytes] = {}
    rng = np.random.default_rng(SAMPLE_SEED)
    samples = rng.normal(0.0, 1.0, size=(N_ITERATIONS * N_WALKERS, 2))

    with fit.store.transaction() as session:
        row = find_campaign(session, name)
        chi2 = (GRID ** 2).sum(axis=1)
        ids = insert_points(session, row, GRID, "initial", step=0, chi2=chi2, outputs=[{"n": i} for i in range(len(GRID))])
        extra = np.array([[3.0, 3.0], [4.0, 4.0]])
        insert_points(session, row, extra, "acquisition", step=1, chi2=[float("nan"), float("inf")])
        insert_points(session, row, np.array([[-3.0, 2.5]]), "acquisition", step=2)

        parent = None
        versions = []
        for version in (1, 2):
            model = models.ModelVersion(
                campaign_id=row.id, version=version, parent_id=parent, training_mode="refit",
                hyperparameters={"max_depth": 2}, metrics={"rmse_low": 1.0 / version, "auc": 0.8 + 0.05 * version},
                n_train=len(GRID), n_low=10, last_point_id=ids[-1], chi2_min=0.0, delta_chi2=9.21,
                training_seconds=0.1 * version, created_by="tester",
            )
            for role in ("classifier", "regressor"):
                data = train_booster(seed=10 * version + len(role))
                boosters[(version, role)] = data
                model.boosters.append(models.Booster(
                    role=role, member=0, format="ubj", sha256=hashlib.sha256(data).hexdigest(), data=data
                ))
            session.add(model)
            session.flush()
            parent = model.id
            versions.append(model)

        for number, model in ((1, versions[0]), (2, versions[1])):
            session.add(models.Step(
                campaign_id=row.id, number=number, status="done", model_version_id=model.id,
                strategy="committee", n_proposed=2, n_evaluated=2 if number == 1 else 0,
                best_chi2=0.0, timings={"train": 0.1}, acquisition={}, convergence={},
            ))

        chain = models.Chain(
            campaign_id=row.id, model_version_id=versions[1].id, status="done", settings={"moves": "de"},
            seed=SAMPLE_SEED, n_walkers=N_WALKERS, n_steps=N_ITERATIONS, burn_in=0, thin=1,
            acceptance_fraction=0.3, tau=[2.0, 2.1], converged=True, created_by="tester",
        )
        session.add(chain)
        session.flush()
        session.add_all([
            models.ChainSample(
                chain_id=chain.id, iteration=i // N_WALKERS, walker=i % N_WALKERS,
                x=np.ascontiguousarray(s, dtype="<f8").tobytes(), params=dict(zip(NAMES, map(float, s))),
                log_prob=float(-0.5 * (s ** 2).sum()),
            )
            for i, s in enumerate(samples)
        ])
        for j, parameter in enumerate(NAMES):
            column = samples[:, j]
            q = np.quantile(column, [0.025, 0.16, 0.5, 0.84, 0.975])
            session.add(models.PosteriorSummary(
                chain_id=chain.id, parameter=parameter, mean=float(column.mean()), std=float(column.std()),
                median=float(q[2]), q02_5=float(q[0]), q16=float(q[1]), q84=float(q[3]), q97_5=float(q[4]),
            ))
            grid = np.linspace(-3, 3, 13)
            session.add(models.Profile(
                model_version_id=versions[1].id, parameter=parameter, grid=grid.tolist(),
                chi2=(grid ** 2).tolist(), low_68=-1.0, high_68=1.0, low_95=-1.96, high_95=1.96,
            ))
        session.add(models.ShapSummary(
            model_version_id=versions[1].id, n_points=len(GRID), base_value=2.0,
            mean_abs_shap={"a": 1.5, "b": 0.5}, mean_abs_interaction={"a:b": 0.2},
            best_fit={"params": {"a": 0.0, "b": 0.0}, "base_value": 2.0, "shap": {"a": -0.1, "b": 0.05}},
        ))
        session.add(models.BestFit(model_version_id=versions[1].id, params={"a": 0.0, "b": 0.0}, chi2=0.0))
        session.add(models.Validation(
            campaign_id=row.id, model_version_id=versions[1].id, chain_id=chain.id,
            point_ids=ids[:3], surrogate_chi2=[float(c) + 0.1 for c in chi2[:3]],
            statistics={"rmse": 0.1, "max_abs": 0.1},
        ))

    return Filled(name=name, n_points=len(GRID) + 3, n_done=len(GRID) + 2, boosters=boosters, samples=samples)
