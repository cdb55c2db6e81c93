"""Sampling a campaign's surrogate posterior and storing chain, summaries, best fit and profiles.

:func:`sample_campaign` compiles the surrogate of a model version, starts
emcee's walkers at the best evaluated points, stores a checkpoint of the
chain after every block of steps (so an interrupted run can be resumed),
and at the end writes in one transaction: the samples after burn-in and
thinning, the posterior summaries, the best-fit point and the 1-D profile
likelihoods of that model version.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import numpy as np

from campaign.errors import ConflictError, ConfigError
from campaign.posterior import (
    ChainRun, SamplerOptions, burn_in_and_thin, initial_walkers, log_probability, run_sampler, summarize,
)
from campaign.profile import find_best_fit, profile_caution, profile_grid, profile_likelihood
from campaign.store import models
from campaign.store.campaigns import current_user
from campaign.store.chains import (
    find_chain, insert_samples, replace_best_fit, replace_posterior_summaries, replace_profiles,
)

__all__ = ["sample_campaign", "default_walkers", "BEST_FIT_STARTS"]

logger = logging.getLogger(__name__)

#: Best evaluated points, and highest posterior samples, that start the best-fit minimization.
BEST_FIT_STARTS = 5


def default_walkers(dim: int) -> int:
    """Return the default ensemble size: 4 walkers per parameter, at least 32."""
    return max(32, 4 * dim)


def sample_campaign(
    fit,
    *,
    walkers: int | None = None,
    max_steps: int = 20000,
    seed: int | None = None,
    check_every: int = 500,
    version: int | None = None,
    resume: int | None = None,
    backend: str = "numba",
    profiles: bool = True,
) -> dict:
    """Sample the surrogate posterior of a campaign and store the results.

    Args:
        fit: An open :class:`campaign.api.Campaign`.
        walkers: Ensemble size, even and at least
            :func:`campaign.posterior.min_walkers`; :func:`default_walkers` when None.
        max_steps: Upper limit of steps per walker.
        seed: Seed of the chain, 0 to 2**32 - 1; the campaign's seed when None.
        check_every: Steps between convergence checks and checkpoints.
        version: Model version number; the newest when None.
        resume: Id of an interrupted or unconverged chain to continue; its
            walkers, seed and model version are kept, ``max_steps`` may grow.
        backend: Compiled predictor, see :mod:`campaign.surrogate.compiled`.
        profiles: Also compute best fit and profile likelihoods.

    Returns:
        A summary: chain id, steps, acceptance fraction, tau, converged,
        number of stored samples, best fit and profile intervals.

    Raises:
        ConfigError: ``walkers``, ``seed``, ``max_steps`` or ``check_every``
            is out of range; the message names the value.
    """
    from campaign.surrogate.compiled import compile_surrogate
    from campaign.surrogate.registry import load_model

    space = fit.space
    if resume is None:
        # Check the settings before loading and compiling the model.
        options = SamplerOptions(
            n_walkers=default_walkers(space.dim) if walkers is None else walkers, max_steps=max_steps,
            seed=fit.settings.seed if seed is None else seed, check_every=check_every,
        )
        options.check(space.dim)
    with fit.store.transaction() as session:
        if resume is not None:
            chain_row, previous, options = _resumable_chain(session, fit.id, resume, max_steps)
            version_row = session.get(models.ModelVersion, chain_row.model_version_id)
            if version_row is None:
                raise ConflictError(f"the model version of chain {resume} was deleted; start a new chain")
            _check_resume_options(chain_row, version_row.version, walkers=walkers, seed=seed, version=version)
            version = version_row.version
        version_row, model = load_model(session, fit.id, space, version)
    surrogate = compile_surrogate(model, backend, threads=fit.settings.threads)
    log_prob = log_probability(surrogate.chi2, space)
    points = fit.arrays()

    if resume is None:
        start = initial_walkers(space, points.x, points.chi2, options.n_walkers, options.seed)
        chain_id = _insert_chain(fit, version_row.id, options, surrogate.backend)
        previous = None
    else:
        chain_id, start = resume, None
    logger.info("sampling chain %d of campaign %s with model version %d (%s predictor)",
                chain_id, fit.name, version_row.version, surrogate.backend)

    try:
        run = run_sampler(log_prob, start, options, previous=previous,
                          checkpoint=lambda current: _store_checkpoint(fit, chain_id, current))
        return _finish(fit, chain_id, version_row.id, run, surrogate.chi2, points, profiles)
    except KeyboardInterrupt:
        # Also during the best fit and profiles: the last checkpoint contains
        # the whole run, so resuming repeats only those.
        _mark_chain(fit, chain_id, "interrupted")
        logger.warning("chain %d interrupted; resume it with --resume %d", chain_id, chain_id)
        raise


def _check_resume_options(chain_row, chain_version: int, **requested) -> None:
    """Reject walkers, seed or model version that differ from those of the chain being resumed."""
    stored = {"walkers": chain_row.n_walkers, "seed": chain_row.seed, "version": chain_version}
    for name, value in requested.items():
        if value is not None and value != stored[name]:
            raise ConfigError(
                f"{name}: chain {chain_row.id} was started with {name} {stored[name]}, got {value}; "
                f"leave --{name} out to resume it, or start a new chain without --resume"
            )


def _resumable_chain(session, campaign_id: int, chain_id: int, max_steps: int):
    row = find_chain(session, campaign_id, chain_id)
    if row.converged:
        raise ConflictError(f"chain {chain_id} has converged already; nothing to resume")
    if row.state is None:
        raise ConflictError(f"chain {chain_id} stored no checkpoint before it stopped; start a new chain")
    previous = ChainRun.from_bytes(row.state)
    settings = row.settings
    if max_steps <= previous.n_steps:
        raise ConfigError(
            f"max_steps: chain {chain_id} has {previous.n_steps} steps already; give a larger --max-steps"
        )
    options = SamplerOptions(
        n_walkers=row.n_walkers, max_steps=max_steps, seed=row.seed, check_every=settings["check_every"],
        tau_factor=settings["tau_factor"], tau_tolerance=settings["tau_tolerance"],
    )
    return row, previous, options


def _insert_chain(fit, model_version_id: int, options: SamplerOptions, backend: str) -> int:
    with fit.store.transaction() as session:
        row = models.Chain(
            campaign_id=fit.id, model_version_id=model_version_id, status="running",
            settings={**options.to_dict(), "predictor": backend}, seed=options.seed,
            n_walkers=options.n_walkers, n_steps=0, created_by=current_user(),
        )
        session.add(row)
        session.flush()
        return row.id


def _store_checkpoint(fit, chain_id: int, run: ChainRun) -> None:
    with fit.store.transaction() as session:
        row = session.get(models.Chain, chain_id)
        row.state = run.to_bytes()
        row.n_steps = run.n_steps
        row.tau = [float(v) for v in run.tau]
        row.tau_history = run.tau_history
        row.acceptance_fraction = run.acceptance_fraction
        row.sampling_seconds = run.seconds
        row.status = "running"


def _mark_chain(fit, chain_id: int, status: str) -> None:
    with fit.store.transaction() as session:
        session.get(models.Chain, chain_id).status = status


def _warn_about_profile_error(fit, model_version_id: int) -> None:
    with fit.store.transaction() as session:
        version = session.get(models.ModelVersion, model_version_id)
        caution = profile_caution(version.metrics, version.version)
    if caution:
        logger.warning(caution)


def _finish(fit, chain_id: int, model_version_id: int, run: ChainRun, chi2, points, profiles: bool) -> dict:
    space = fit.space
    burn_in, thin = burn_in_and_thin(run.tau, run.n_steps)
    kept = run.chain[burn_in::thin]
    samples = kept.reshape(-1, space.dim)
    summaries = summarize(samples, space.names)

    best = None
    profile_results = []
    if profiles:
        finite = np.isfinite(points.chi2)
        starts = points.x[finite][np.argsort(points.chi2[finite], kind="stable")[:BEST_FIT_STARTS]]
        # Starts from the chain too: on a piecewise-constant surrogate, Powell
        # ends at different plateaus from different starts.
        positions, log_prob = run.chain.reshape(-1, space.dim), run.log_prob.reshape(-1)
        highest = positions[np.argsort(-log_prob, kind="stable")[:BEST_FIT_STARTS]]
        best_x, best_chi2 = find_best_fit(chi2, space, np.vstack([starts, highest]))
        best = {"params": dict(zip(space.names, map(float, best_x))), "chi2": best_chi2}
        profile_results = [
            profile_likelihood(chi2, space, i, best_x, best_chi2, profile_grid(space, i, samples), samples)
            for i in range(space.dim)
        ]
        _warn_about_profile_error(fit, model_version_id)

    with fit.store.transaction() as session:
        n_samples = insert_samples(session, chain_id, space.names, kept, run.log_prob[burn_in::thin], burn_in, thin)
        replace_posterior_summaries(session, chain_id, summaries)
        row = session.get(models.Chain, chain_id)
        row.state = run.to_bytes()
        row.status = "done"
        row.n_steps = run.n_steps
        row.burn_in, row.thin = burn_in, thin
        row.acceptance_fraction = run.acceptance_fraction
        row.tau = [float(v) for v in run.tau]
        row.tau_history = run.tau_history
        row.converged = run.converged
        row.sampling_seconds = run.seconds
        row.finished_at = datetime.now(timezone.utc)
        if best is not None:
            replace_best_fit(session, model_version_id, best["params"], best["chi2"])
            replace_profiles(session, model_version_id, profile_results)
    if not run.converged:
        logger.warning("chain %d stopped at max_steps=%d before convergence; resume it with a larger --max-steps",
                       chain_id, run.n_steps)
    logger.info("chain %d done: %d steps, %d samples stored", chain_id, run.n_steps, n_samples)
    return {
        "chain_id": chain_id, "n_steps": run.n_steps, "n_walkers": run.chain.shape[1],
        "acceptance_fraction": run.acceptance_fraction, "tau": dict(zip(space.names, map(float, run.tau))),
        "converged": run.converged, "burn_in": burn_in, "thin": thin, "n_samples": n_samples,
        "seconds": run.seconds, "summaries": summaries, "best_fit": best,
        "profiles": [
            {"parameter": p.parameter, "interval_68": p.interval_68, "interval_95": p.interval_95}
            for p in profile_results
        ],
    }
