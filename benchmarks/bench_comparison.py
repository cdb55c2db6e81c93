"""emcee on the true likelihood, GPry, and campaign's two strategies, side by side.

Cases: gaussian-4d, bimodal-6d (exact posteriors) and flavio-bsnunu (2-D,
reference from a 161 x 161 grid of the exact likelihood). Each method runs
on the example's likelihood and uniform prior box:

(a) emcee (campaign's DE + DE-snooker ensemble, 32 walkers started at
    uniform draws from the prior) on the true likelihood until the
    autocorrelation criterion is met (chain longer than 50 tau, tau stable
    to 1%) or the step cap;
(b) GPry's ``Runner`` with its defaults until its own convergence, the
    evaluation cap or the time cap, then its nested-sampling MC sample;
(c) campaign through the Python API on a SQLite file in a temporary
    directory, ``acquisition: committee`` and ``acquisition: gp``, with the
    example's settings; the surrogate posterior is sampled every
    SAMPLE_EVERY steps and after the last one.

The interval error of a posterior is, per parameter and per level (68% and
95% equal-tailed), the larger distance of its two ends from the reference
ends, divided by the reference width. A method "reaches" the target at the
first check after which every check has both errors at most 10% for every
parameter. Wall time counts everything the method did until then.

The flavio case: flavio's branching ratios are exact quadratic forms in the
real shifts (C_L, C_R), so six coefficients fitted to flavio predictions at
FIT_POINTS points give them to numerical precision, and flavio's own
measurement likelihood turns them into chi2 in about a millisecond. The
grid reference and emcee use this exact form (checked against full flavio
at CHECK_POINTS points); emcee's wall time there is projected as its
evaluations times the measured seconds of one full flavio evaluation.
GPry and campaign call full flavio.

    python -m benchmarks.bench_comparison            # full run, about 25 minutes on 2 cores
    python -m benchmarks.bench_comparison --quick    # smoke run with small budgets
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import optimize, stats

from benchmarks.report import write_section
from campaign.api import create_campaign
from campaign.config import load_campaign_file
from campaign.posterior import SamplerOptions, burn_in_and_thin, log_probability, run_sampler

ROOT = Path(__file__).resolve().parents[1]
LEVELS = {"68%": (0.16, 0.84), "95%": (0.025, 0.975)}
TARGET = 0.10
WALKERS = 32
SAMPLE_EVERY = 2
FIT_POINTS = 12
CHECK_POINTS = 8
GRID = 161

#: Budgets per case: campaign evaluations (initial design included), emcee
#: step cap, GPry evaluation cap and GPry seconds; the quick run uses the second tuple.
BUDGETS = {
    "gaussian-4d": {"campaign": (384, 192), "emcee_steps": (20000, 600), "gpry": (300, 60), "gpry_seconds": (200, 60)},
    "bimodal-6d": {"campaign": (576, 320), "emcee_steps": (20000, 600), "gpry": (400, 60), "gpry_seconds": (200, 60)},
    "flavio-bsnunu": {"campaign": (248, 176), "emcee_steps": (2000, 300), "gpry": (200, 40), "gpry_seconds": (200, 60)},
}

logger = logging.getLogger(__name__)


@dataclass
class Case:
    """One benchmark problem: box, likelihood and reference quantiles.

    Attributes:
        chi2: The true chi2 of one point, called with keyword arguments.
        fast_chi2: chi2 of rows, shape (n, dim) -> (n,), with the same values
            as ``chi2``; cheaper for flavio.
        reference: Per level, the reference interval ends, shape (dim, 2).
        seconds_per_evaluation: Measured cost of ``chi2`` when emcee runs on ``fast_chi2``; else None.
    """

    name: str
    names: tuple[str, ...]
    bounds: np.ndarray
    chi2: Callable[..., float]
    fast_chi2: Callable[[np.ndarray], np.ndarray]
    reference: dict
    seconds_per_evaluation: float | None = None


@dataclass
class Result:
    """Cost of one method until the target, and its state at the end."""

    method: str
    reached_evaluations: int | None = None
    reached_seconds: float | None = None
    evaluations: int = 0
    seconds: float = 0.0
    errors: tuple[float, float] = (math.nan, math.nan)
    note: str = ""


def load_module(name: str):
    """Import ``examples/NAME/likelihood.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name.replace('-', '_')}", ROOT / "examples" / name / "likelihood.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def box_of(name: str) -> tuple[tuple[str, ...], np.ndarray]:
    space = load_campaign_file(ROOT / "examples" / name / "campaign.yaml").space
    return tuple(space.names), np.array([[p.low, p.high] for p in space.parameters])


def row_function(chi2: Callable[..., float], names: tuple[str, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """Turn a keyword chi2 into a function of rows, shape (n, dim) -> (n,)."""
    def function(x: np.ndarray) -> np.ndarray:
        return np.array([_scalar(chi2(**dict(zip(names, row)))) for row in np.atleast_2d(x)])

    return function


def _scalar(value) -> float:
    return float(value["chi2"] if isinstance(value, dict) else value)


def gaussian_case() -> Case:
    """Build the correlated 4-D Gaussian case, whose marginals are N(MEAN_i, STD_i)."""
    module = load_module("gaussian-4d")
    names, bounds = box_of("gaussian-4d")
    reference = {
        level: np.column_stack([stats.norm.ppf(q, module.MEAN, module.STD) for q in qs])
        for level, qs in LEVELS.items()
    }
    return Case("gaussian-4d", names, bounds, module.chi2, row_function(module.chi2, names), reference)


def bimodal_case() -> Case:
    """Build the two-mode 6-D case, whose marginals are two-component normal mixtures."""
    module = load_module("bimodal-6d")
    names, bounds = box_of("bimodal-6d")

    def quantile(i: int, q: float) -> float:
        def cdf_gap(value):
            return module.WEIGHTS @ stats.norm.cdf(value, module.MODES[:, i], module.STD[i]) - q

        return optimize.brentq(cdf_gap, *bounds[i])

    reference = {
        level: np.array([[quantile(i, q) for q in qs] for i in range(len(names))]) for level, qs in LEVELS.items()
    }
    return Case("bimodal-6d", names, bounds, module.chi2, row_function(module.chi2, names), reference)


def flavio_case() -> Case:
    """Build the flavio b -> s nu nu case in 2-D from the exact quadratic form of its branching ratios."""
    module = load_module("flavio-bsnunu")
    names, bounds = box_of("flavio-bsnunu")
    rng = np.random.default_rng(11)
    points = rng.uniform(bounds[:, 0], bounds[:, 1], (FIT_POINTS + CHECK_POINTS, 2))

    start = time.perf_counter()
    full = [module.chi2(*p) for p in points]
    seconds = (time.perf_counter() - start) / len(points)
    ratios = np.array([[r[o] for o in module.OBSERVABLES] for r in full])
    coefficients, *_ = np.linalg.lstsq(_quadratic_features(points[:FIT_POINTS]), ratios[:FIT_POINTS], rcond=None)
    likelihood = module.build_likelihood().measurement_likelihood

    def fast_chi2(x: np.ndarray) -> np.ndarray:
        predictions = _quadratic_features(np.atleast_2d(x)) @ coefficients
        values = []
        for row in predictions:
            log_likelihood = float(likelihood.log_likelihood_pred(dict(zip(module.OBSERVABLES, row)), delta=True))
            values.append(math.inf if log_likelihood == -math.inf else -2.0 * log_likelihood)
        return np.array(values)

    exact = np.array([r["chi2"] for r in full[FIT_POINTS:]])
    fast = fast_chi2(points[FIT_POINTS:])
    both = np.isfinite(exact)
    if not np.array_equal(both, np.isfinite(fast)) or np.abs(fast[both] - exact[both]).max() > 1e-3:
        raise RuntimeError(f"the quadratic form of the branching ratios does not reproduce flavio: {fast} vs {exact}")
    logger.info("flavio: %.3f s per evaluation; quadratic form within %.1e of flavio", seconds,
                np.abs(fast[both] - exact[both]).max())

    reference = _grid_reference(fast_chi2, bounds)
    return Case("flavio-bsnunu", names, bounds, module.chi2, fast_chi2, reference, seconds_per_evaluation=seconds)


def _quadratic_features(x: np.ndarray) -> np.ndarray:
    a, b = x[:, 0], x[:, 1]
    return np.column_stack([np.ones(len(x)), a, b, a * a, a * b, b * b])


def _grid_reference(fast_chi2, bounds: np.ndarray) -> dict:
    """Compute marginal quantiles of exp(-chi2/2) on a GRID x GRID grid over the 2-D box (uniform prior)."""
    axes = [np.linspace(low, high, GRID) for low, high in bounds]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
    chi2 = fast_chi2(mesh).reshape(GRID, GRID)
    density = np.exp(-0.5 * (chi2 - np.nanmin(chi2[np.isfinite(chi2)])))
    reference = {}
    for level, qs in LEVELS.items():
        ends = []
        for i in range(2):
            marginal = density.sum(axis=1 - i)
            ends.append(_weighted_quantiles(axes[i], marginal, qs))
        reference[level] = np.array(ends)
    return reference


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, qs) -> np.ndarray:
    """Compute quantiles of a weighted sample by linear interpolation of the midpoint CDF, shape (len(qs),)."""
    order = np.argsort(values)
    values, weights = values[order], np.asarray(weights, dtype=float)[order]
    cumulative = (np.cumsum(weights) - 0.5 * weights) / weights.sum()
    return np.interp(qs, cumulative, values)


def interval_errors(case: Case, samples: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Compute the largest end error of the 68% and of the 95% intervals, in units of the reference width."""
    weights = np.ones(len(samples)) if weights is None else weights
    errors = []
    for level, qs in LEVELS.items():
        reference = case.reference[level]
        width = reference[:, 1] - reference[:, 0]
        ends = np.array([_weighted_quantiles(samples[:, i], weights, qs) for i in range(len(case.names))])
        errors.append(float((np.abs(ends - reference).max(axis=1) / width).max()))
    return errors[0], errors[1]


class Tracker:
    """Record (evaluations, seconds, errors) checks and find where the target was reached for good."""

    def __init__(self):
        self.checks: list[tuple[int, float, tuple[float, float]]] = []

    def add(self, evaluations: int, seconds: float, errors: tuple[float, float]) -> None:
        self.checks.append((evaluations, seconds, errors))

    def settled(self, last: int) -> bool:
        """Return whether the last ``last`` checks all met the target."""
        return len(self.checks) >= last and all(max(e) <= TARGET for _, _, e in self.checks[-last:])

    def fill(self, result: Result) -> Result:
        reached = None
        for evaluations, seconds, errors in reversed(self.checks):
            if max(errors) > TARGET:
                break
            reached = (evaluations, seconds)
        if reached is not None:
            result.reached_evaluations, result.reached_seconds = reached
        if self.checks:
            result.evaluations, result.seconds, result.errors = self.checks[-1]
        return result


def run_emcee(case: Case, max_steps: int) -> Result:
    """Run emcee on the true likelihood from uniform prior draws, checking the intervals every 100 steps."""
    rng = np.random.default_rng(5)
    low, high = case.bounds[:, 0], case.bounds[:, 1]
    start_time = time.perf_counter()
    starts, drawn = [], 0
    while len(starts) < WALKERS:
        x = rng.uniform(low, high, (WALKERS, len(case.names)))
        drawn += WALKERS
        starts.extend(x[np.isfinite(case.fast_chi2(x))])
    start = np.array(starts[:WALKERS])
    start_seconds = time.perf_counter() - start_time

    space = load_campaign_file(ROOT / "examples" / case.name / "campaign.yaml").space
    log_prob = log_probability(case.fast_chi2, space)
    options = SamplerOptions(n_walkers=WALKERS, max_steps=max_steps, seed=5, check_every=100)
    tracker = Tracker()
    per_evaluation = case.seconds_per_evaluation

    def check(run) -> None:
        burn_in, _ = burn_in_and_thin(run.tau, run.n_steps)
        samples = run.chain[burn_in:].reshape(-1, len(case.names))
        evaluations = drawn + run.n_steps * WALKERS
        seconds = start_seconds + run.seconds if per_evaluation is None else evaluations * per_evaluation
        tracker.add(evaluations, seconds, interval_errors(case, samples))

    run = run_sampler(log_prob, start, options, checkpoint=check)
    tau = float(np.max(run.tau))
    note = f"tau {tau:.0f} steps, {'converged' if run.converged else f'not converged at the cap of {max_steps} steps'}"
    if per_evaluation is not None:
        note += f"; seconds projected at {per_evaluation:.2f} s per flavio evaluation"
    return tracker.fill(Result("emcee, true likelihood", note=note))


def run_gpry(case: Case, max_total: int, max_seconds: float, workdir: Path) -> Result:
    """Run GPry's Runner with its defaults until its convergence, ``max_total`` evaluations or ``max_seconds``."""
    try:
        from gpry import Runner
    except ImportError as exc:
        return Result("GPry", note=f"not run: {exc}")

    counter = {"n": 0}

    def loglike(x):
        counter["n"] += 1
        value = _scalar(case.chi2(**dict(zip(case.names, x))))
        return -0.5 * value

    started = time.perf_counter()

    def stop_at_time_limit(runner) -> None:
        if time.perf_counter() - started > max_seconds:
            raise TimeoutError(f"time cap of {max_seconds:.0f} s")

    runner = Runner(loglike, case.bounds.tolist(), params=list(case.names), seed=3, plots=False, verbose=1,
                    options={"max_total": max_total, "max_initial": min(max_total, int(30 * len(case.names) ** 1.5))}, callback=stop_at_time_limit)
    note = "converged"
    try:
        runner.run()
        if not runner.has_converged:
            note = f"stopped at the cap of {max_total} evaluations"
    except TimeoutError as exc:
        note = f"stopped at the {exc}"
    except Exception as exc:  # noqa: BLE001 - a failing tool is reported, not hidden
        logger.error("GPry failed on %s: %r", case.name, exc)
        return Result("GPry", evaluations=counter["n"], seconds=time.perf_counter() - started,
                      note=f"failed: {type(exc).__name__}: {exc}")
    evaluations = counter["n"]
    sample = runner.generate_mc_sample(output=str(workdir / f"gpry-{case.name}" / "mc"))
    seconds = time.perf_counter() - started
    tracker = Tracker()
    tracker.add(evaluations, seconds, interval_errors(case, sample["X"], sample["w"]))
    return tracker.fill(Result("GPry", note=note + ", one check at the end"))


def run_campaign(case: Case, strategy: str, budget: int, workdir: Path) -> Result:
    """Run campaign's steps through the Python API, sampling the surrogate posterior every SAMPLE_EVERY steps."""
    spec = load_campaign_file(ROOT / "examples" / case.name / "campaign.yaml")
    spec = dataclasses.replace(spec, name=f"{case.name}-{strategy}",
                               settings=dataclasses.replace(spec.settings, acquisition=strategy))
    fit = create_campaign(spec, f"sqlite:///{workdir / f'{case.name}-{strategy}.db'}")
    tracker = Tracker()
    converged_at = None
    step_seconds, evaluations, steps = 0.0, 0, 0
    while evaluations < budget and not tracker.settled(2):
        began = time.perf_counter()
        batch = min(fit.settings.batch_size, budget - evaluations) if evaluations else None
        report = fit.step(workers=2, batch_size=batch)
        step_seconds += time.perf_counter() - began
        steps += 1
        counts = fit.status_counts()
        evaluations = counts["done"] + counts["failed"]
        if report.converged and converged_at is None:
            converged_at = evaluations
        if steps % SAMPLE_EVERY and evaluations < budget:
            continue
        began = time.perf_counter()
        chain = fit.sample(walkers=WALKERS, max_steps=10000, seed=5, check_every=500, profiles=False)
        samples = fit.chain(chain["chain_id"])[list(case.names)].to_numpy()
        tracker.add(evaluations, step_seconds + time.perf_counter() - began, interval_errors(case, samples))
        logger.info("%s %s: %d evaluations, errors %s", case.name, strategy, evaluations, tracker.checks[-1][2])
    own = f"own criterion converged at {converged_at}" if converged_at else "own criterion not met"
    return tracker.fill(Result(f"campaign, {strategy}", note=f"{steps} steps; {own}"))


def format_table(rows: list[tuple[str, Result]]) -> str:
    lines = [
        "| case | method | evaluations to 10% | seconds to 10% | evaluations (end) | seconds (end) "
        "| 68% error (end) | 95% error (end) | notes |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for case, r in rows:
        reached = "not reached" if r.reached_evaluations is None else f"{r.reached_evaluations:,}"
        reached_seconds = "-" if r.reached_seconds is None else _seconds(r.reached_seconds)
        lines.append(
            f"| {case} | {r.method} | {reached} | {reached_seconds} | {r.evaluations:,} | {_seconds(r.seconds)} "
            f"| {_percent(r.errors[0])} | {_percent(r.errors[1])} | {r.note} |"
        )
    return "\n".join(lines)


def describe_run(pick: int) -> str:
    """Write the text above the table: target, reference, budgets and the commands to reproduce."""
    budget_rows = "\n".join(
        f"| {name} | {b['campaign'][pick]} | {b['emcee_steps'][pick]:,} x {WALKERS} | {b['gpry'][pick]} "
        f"| {b['gpry_seconds'][pick]} |"
        for name, b in BUDGETS.items()
    )
    return f"""\
Target: for every parameter, both ends of the 68% and of the 95% equal-tailed
interval lie within {TARGET:.0%} of the reference width of that interval. The reference is
exact for gaussian-4d (normal marginals) and bimodal-6d (two-component
mixture marginals), and a {GRID} x {GRID} grid of the exact likelihood for
flavio-bsnunu. "Evaluations to 10%" is the first check after which every
later check met the target; "not reached" means the last check missed it.
The errors at the end are the largest end errors over parameters.

- emcee: campaign's DE + DE-snooker ensemble, {WALKERS} walkers from uniform
  prior draws, true likelihood, checked every 100 steps; stops when the chain
  is longer than 50 tau and tau changed by less than 1%, or at the step cap.
  For flavio-bsnunu it runs on an exact quadratic form of flavio's branching
  ratios (the same chi2 as flavio within 1e-3, checked at {CHECK_POINTS} points), and its
  seconds are projected as evaluations x the measured seconds of one full
  flavio evaluation.
- GPry {_gpry_version()}: `gpry.run.Runner` with its defaults (RBF Gaussian process, NORA
  acquisition), stopped by its own convergence criterion, the evaluation cap
  or the time cap. The time cap is checked after each iteration, so a run
  can pass it. Then one nested-sampling MC sample of its surrogate is drawn
  and counted in its seconds.
- campaign: `create_campaign` on a SQLite file in a temporary directory with
  the example's campaign.yaml and `acquisition` set to committee or gp.
  `Campaign.step(workers=2)` runs until the budget, and `Campaign.sample`
  ({WALKERS} walkers, at most 10,000 steps) runs every {SAMPLE_EVERY} steps and after the last.
  Seconds include the steps and that check's sampling, and for flavio the
  import of flavio in each step's two worker processes. A run stops early
  after two checks in a row met the target.

Budgets of this run:

| case | campaign evaluations | emcee steps x walkers (cap) | GPry evaluations (cap) | GPry seconds (cap) |
| --- | ---: | ---: | ---: | ---: |
{budget_rows}

Reproduce (from the repository root, with `pip install gpry` and
`pip install -e '.[flavio]'`):

    python -m benchmarks.bench_comparison            # full run
    python -m benchmarks.bench_comparison --quick    # smoke run, small budgets
"""


def _gpry_version() -> str:
    try:
        from importlib.metadata import version

        return version("gpry")
    except Exception:  # noqa: BLE001 - only the label depends on it
        return "(not installed)"


def _seconds(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:,.0f}"


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1%}"


CASES = {"gaussian-4d": gaussian_case, "bimodal-6d": bimodal_case, "flavio-bsnunu": flavio_case}
METHODS = ("emcee", "gpry", "committee", "gp")
SECTION = "emcee, GPry and campaign side by side"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small budgets (a smoke run of a few minutes)")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES), help="cases to run")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS, help="methods to run")
    parser.add_argument("--no-write", action="store_true", help="print the table without writing docs/benchmarks.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.chdir(ROOT)
    pick = 1 if args.quick else 0

    rows = []
    load = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-comparison-") as directory:
        workdir = Path(directory)
        for name in args.cases:
            case = CASES[name]()
            budgets = {key: value[pick] for key, value in BUDGETS[name].items()}
            for method in args.methods:
                if method == "emcee":
                    result = run_emcee(case, budgets["emcee_steps"])
                elif method == "gpry":
                    result = run_gpry(case, budgets["gpry"], budgets["gpry_seconds"], workdir)
                else:
                    result = run_campaign(case, method, budgets["campaign"], workdir)
                logger.info("%s: %s", name, result)
                rows.append((name, result))
    total = time.perf_counter() - started
    table = format_table(rows)
    print(table)
    print(f"total {total:.0f} s, load average {load:.1f} before and {os.getloadavg()[0]:.1f} after")
    if not args.no_write:
        command = "python -m benchmarks.bench_comparison" + (" --quick" if args.quick else "")
        footer = f"Total {total:.0f} s; load average (1 min) {load:.1f} before and {os.getloadavg()[0]:.1f} after."
        write_section(SECTION, f"{describe_run(pick)}\n{table}\n\n{footer}", command=command)


if __name__ == "__main__":
    main()
