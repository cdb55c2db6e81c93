"""Posterior sampling with emcee: walkers, convergence, burn-in, thinning and summaries.

The sampler is emcee's ensemble sampler with differential-evolution moves
(80% DE, 20% DE-snooker), which suit correlated posteriors. The
log-probability is vectorized, so emcee predicts each half of the ensemble
in one call. Sampling runs in blocks; after each block the integrated
autocorrelation time tau (``emcee.autocorr.integrated_time``) is updated,
and the chain has converged when it is longer than ``tau_factor * tau`` and
tau changed by less than ``tau_tolerance`` (relative) since the last block,
for every parameter.

This module works on any vectorized chi2 function; :mod:`campaign.sampling`
runs it on a campaign's surrogate and stores the result.
"""

from __future__ import annotations

import io
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import emcee
import numpy as np

from campaign.errors import ConfigError
from campaign.moves import DEMove, SnookerMove, VectorizedSampler
from campaign.space import ParameterSpace

__all__ = [
    "SamplerOptions", "ChainRun", "min_walkers", "MIN_WALKERS", "MAX_SEED", "log_probability", "initial_walkers", "run_sampler",
    "burn_in_and_thin", "summarize", "QUANTILES",
]

logger = logging.getLogger(__name__)

#: Quantiles stored per parameter: the 95% and 68% central intervals and the median.
QUANTILES = (0.025, 0.16, 0.5, 0.84, 0.975)
#: Smallest ensemble for the DE and snooker moves, whatever the dimension (see min_walkers).
MIN_WALKERS = 4
#: Largest seed numpy's RandomState accepts.
MAX_SEED = 2**32 - 1
DE_FRACTION = 0.8
SNOOKER_FRACTION = 0.2
#: Relative spread of the jitter added to starting points, in unit-cube coordinates.
START_JITTER = 1e-3

Chi2Function = Callable[[np.ndarray], np.ndarray]


def min_walkers(dim: int) -> int:
    """Return the smallest ensemble emcee can run with ``dim`` parameters.

    emcee's red-blue moves reject fewer than 2 walkers per parameter. The
    DE move draws two distinct walkers from the other half of the ensemble
    and the snooker move splits it into 4 groups, so both need at least 4.
    """
    return max(MIN_WALKERS, 2 * dim)


@dataclass(frozen=True)
class SamplerOptions:
    """Settings of one emcee run.

    Attributes:
        n_walkers: Walkers in the ensemble; even and at least :func:`min_walkers`.
        max_steps: Upper limit of steps per walker.
        seed: Seed of the start jitter and of emcee's random state.
        check_every: Steps between convergence checks and checkpoints.
        tau_factor: The chain must be longer than this many tau.
        tau_tolerance: Largest relative change of tau between checks.
    """

    n_walkers: int
    max_steps: int = 20000
    seed: int = 0
    check_every: int = 500
    tau_factor: float = 50.0
    tau_tolerance: float = 0.01

    def check(self, dim: int) -> None:
        """Raise ConfigError on settings emcee cannot run with."""
        minimum = min_walkers(dim)
        if self.n_walkers < minimum or self.n_walkers % 2:
            raise ConfigError(
                f"walkers: need an even number of at least {minimum} (2 per parameter and at least "
                f"{MIN_WALKERS}), got {self.n_walkers}"
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed: must be an integer from 0 to {MAX_SEED} (numpy's RandomState), got {self.seed}")
        if self.max_steps < 1:
            raise ConfigError(f"max_steps: must be at least 1, got {self.max_steps}")
        if self.check_every < 1:
            raise ConfigError(f"check_every: must be at least 1, got {self.check_every}")

    def to_dict(self) -> dict:
        return {
            "n_walkers": self.n_walkers, "max_steps": self.max_steps, "seed": self.seed,
            "check_every": self.check_every, "tau_factor": self.tau_factor, "tau_tolerance": self.tau_tolerance,
            "moves": {"DEMove": DE_FRACTION, "DESnookerMove": SNOOKER_FRACTION},
        }


@dataclass
class ChainRun:
    """A chain in progress or finished, with all it needs to continue.

    Attributes:
        chain: Walker positions, shape (n_steps, n_walkers, dim).
        log_prob: Log-probabilities, shape (n_steps, n_walkers).
        accepted: Accepted proposals per walker, shape (n_walkers,).
        random_state: emcee's random state (numpy ``RandomState.get_state()``).
        tau_history: One entry per check: [n_steps, tau_1, ..., tau_dim].
        converged: Whether the convergence criterion held at the last check.
        seconds: Sampling time so far.
    """

    chain: np.ndarray
    log_prob: np.ndarray
    accepted: np.ndarray
    random_state: tuple
    tau_history: list = field(default_factory=list)
    converged: bool = False
    seconds: float = 0.0

    @property
    def n_steps(self) -> int:
        return len(self.chain)

    @property
    def tau(self) -> np.ndarray | None:
        return np.array(self.tau_history[-1][1:]) if self.tau_history else None

    @property
    def acceptance_fraction(self) -> float:
        return float(self.accepted.sum() / (self.n_steps * len(self.accepted))) if self.n_steps else math.nan

    def to_bytes(self) -> bytes:
        """Serialize the run as an ``.npz`` archive (numpy arrays only, no pickle)."""
        name, keys, position, has_gauss, cached_gaussian = self.random_state
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer, chain=self.chain, log_prob=self.log_prob, accepted=self.accepted,
            random_name=np.array(name), random_keys=keys,
            random_scalars=np.array([position, has_gauss], dtype=np.int64),
            random_gaussian=np.array(cached_gaussian, dtype=float),
            tau_history=np.array(self.tau_history, dtype=float).reshape(len(self.tau_history), -1),
            converged=np.array(self.converged), seconds=np.array(self.seconds),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "ChainRun":
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            position, has_gauss = (int(v) for v in archive["random_scalars"])
            random_state = (str(archive["random_name"]), archive["random_keys"], position, has_gauss,
                            float(archive["random_gaussian"]))
            return cls(
                chain=archive["chain"], log_prob=archive["log_prob"], accepted=archive["accepted"],
                random_state=random_state, tau_history=archive["tau_history"].tolist(),
                converged=bool(archive["converged"]), seconds=float(archive["seconds"]),
            )


def log_probability(chi2: Chi2Function, space: ParameterSpace) -> Callable[[np.ndarray], np.ndarray]:
    """Build the vectorized log-posterior ``-chi2/2 + log prior``.

    Rows outside the box get ``-inf`` and are not passed to ``chi2``; a
    NaN chi2 also gives ``-inf``.

    Args:
        chi2: Vectorized chi2 of physical values, shape (n, dim) -> (n,).
        space: Parameter space with the campaign's priors.
    """

    def function(x: np.ndarray) -> np.ndarray:
        log_prior = space.log_prior(x)
        inside = np.isfinite(log_prior)
        result = np.full(len(x), -np.inf)
        if inside.any():
            values = -0.5 * np.asarray(chi2(x[inside]), dtype=float) + log_prior[inside]
            result[inside] = np.where(np.isnan(values), -np.inf, values)
        return result

    return function


def initial_walkers(space: ParameterSpace, x: np.ndarray, chi2: np.ndarray, n_walkers: int, seed: int) -> np.ndarray:
    """Start walkers at the best evaluated points, with a small jitter.

    The jitter keeps walkers linearly independent (emcee requires it), also
    when fewer distinct points than walkers exist; then the best points are
    reused in turn.

    Args:
        x: Evaluated points, shape (n, dim).
        chi2: Their chi2, shape (n,); non-finite values are skipped.
        n_walkers: Number of walkers.

    Returns:
        Starting positions, shape (n_walkers, dim), inside the box.

    Raises:
        ConfigError: No point has a finite chi2.
    """
    finite = np.isfinite(chi2)
    if not finite.any():
        raise ConfigError("no evaluated point has a finite chi2; evaluate points before sampling")
    order = np.argsort(chi2[finite], kind="stable")[:n_walkers]
    best = space.to_unit(x[finite][order])
    rng = np.random.default_rng(seed)
    start = best[np.arange(n_walkers) % len(best)]
    start = start + START_JITTER * rng.standard_normal(start.shape)
    return space.from_unit(np.clip(start, 1e-9, 1.0 - 1e-9))


def run_sampler(
    log_prob: Callable[[np.ndarray], np.ndarray],
    start: np.ndarray,
    options: SamplerOptions,
    *,
    previous: ChainRun | None = None,
    checkpoint: Callable[[ChainRun], None] | None = None,
) -> ChainRun:
    """Run emcee until convergence or ``max_steps``, in blocks of ``check_every`` steps.

    Args:
        log_prob: Vectorized log-probability, shape (n, dim) -> (n,).
        start: Starting positions, shape (n_walkers, dim); ignored when resuming.
        options: Sampler settings.
        previous: A stored run to continue; it continues exactly where it
            stopped, so an interrupted and resumed chain equals an
            uninterrupted one with the same seed.
        checkpoint: Called with the run after each block, e.g. to store it.

    Returns:
        The run; ``converged`` says whether it stopped by the criterion.
    """
    dim = np.shape(start)[1] if previous is None else previous.chain.shape[2]
    options.check(dim)
    sampler = VectorizedSampler(
        options.n_walkers, dim, log_prob, vectorize=True,
        moves=[(DEMove(), DE_FRACTION), (SnookerMove(), SNOOKER_FRACTION)],
    )
    if previous is None:
        random_state = np.random.RandomState(options.seed).get_state()
        run = ChainRun(np.empty((0, options.n_walkers, dim)), np.empty((0, options.n_walkers)),
                       np.zeros(options.n_walkers), random_state)
        state = emcee.State(np.asarray(start, dtype=float), random_state=random_state)
    else:
        run = previous
        state = emcee.State(run.chain[-1], log_prob=run.log_prob[-1], random_state=run.random_state)
        logger.info("resuming chain at step %d", run.n_steps)

    check_start = previous is None
    while run.n_steps < options.max_steps and not run.converged:
        steps = min(options.check_every, options.max_steps - run.n_steps)
        began = time.perf_counter()
        state = sampler.run_mcmc(state, steps, skip_initial_state_check=not check_start)
        check_start = False
        run = _append_block(run, sampler, steps, time.perf_counter() - began, options)
        sampler.reset()
        if checkpoint is not None:
            checkpoint(run)
        logger.info("chain at step %d: tau %s, converged %s", run.n_steps, np.round(run.tau, 2), run.converged)
    return run


def _append_block(run: ChainRun, sampler: emcee.EnsembleSampler, steps: int, seconds: float,
                  options: SamplerOptions) -> ChainRun:
    chain = np.concatenate([run.chain, sampler.get_chain()])
    log_prob = np.concatenate([run.log_prob, sampler.get_log_prob()])
    accepted = run.accepted + sampler.acceptance_fraction * steps
    # tol=0 returns an estimate even for a short chain; convergence is judged below.
    tau = emcee.autocorr.integrated_time(chain, tol=0)
    previous_tau = run.tau
    converged = bool(
        previous_tau is not None
        and np.all(len(chain) > options.tau_factor * tau)
        and np.all(np.abs(previous_tau - tau) / tau < options.tau_tolerance)
    )
    history = run.tau_history + [[len(chain), *map(float, tau)]]
    return ChainRun(chain, log_prob, accepted, sampler.random_state, history, converged, run.seconds + seconds)


def burn_in_and_thin(tau: np.ndarray | None, n_steps: int) -> tuple[int, int]:
    """Choose burn-in (2 max tau) and thinning (half the smallest tau, at least 1).

    The burn-in is capped at half the chain, so a short unconverged chain
    still keeps samples.
    """
    if tau is None or not np.all(np.isfinite(tau)):
        return n_steps // 2, 1
    burn_in = min(int(math.ceil(2.0 * float(np.max(tau)))), n_steps // 2)
    thin = max(1, int(0.5 * float(np.min(tau))))
    return burn_in, thin


def summarize(samples: np.ndarray, names: tuple[str, ...]) -> list[dict]:
    """Compute mean, std, median and the 68% and 95% central intervals per parameter.

    Args:
        samples: Posterior samples, shape (n_samples, dim).
        names: Parameter names, length dim.

    Returns:
        One dict per parameter with keys parameter, mean, std, median,
        q02_5, q16, q84, q97_5.
    """
    quantiles = np.quantile(samples, QUANTILES, axis=0)
    return [
        {
            "parameter": name,
            "mean": float(samples[:, i].mean()),
            "std": float(samples[:, i].std(ddof=1)),
            "median": float(quantiles[2, i]),
            "q02_5": float(quantiles[0, i]),
            "q16": float(quantiles[1, i]),
            "q84": float(quantiles[3, i]),
            "q97_5": float(quantiles[4, i]),
        }
        for i, name in enumerate(names)
    ]
