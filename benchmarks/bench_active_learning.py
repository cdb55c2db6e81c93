"""Active learning against pure space-filling sampling on the analytic examples.

For each example and strategy, the loop of ``campaign step`` runs on arrays
with the example's true chi2: the same initial design, training and tuning
schedule, seeds and settings as the step, without the database and the
evaluation pool. It records the number of true evaluations (initial design
included) until

(a) the best chi2 is within 0.1 of the true minimum,
(b) at least 95% of true-low test points are classified low by the
    surrogate (classifier probability above 0.5),
(b') at least 95% of the posterior mass of the low region is classified
    low: the test points of (b) weighted by exp(-(chi2 - chi2_min) / 2), and
(c) for an example with several minima, each minimum has a point within 0.1
    of its own chi2.

Test points of (b) are uniform in the true region chi2 < chi2_min + delta_chi2
(rejection sampling in a box around each known minimum), so the edge of the
region weighs as much as its centre. The ``random`` strategy proposes
space-filling batches only but trains the same surrogate, for (b).

    python -m benchmarks.bench_active_learning
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.report import write_section
from campaign.acquisition import propose_batch
from campaign.config import load_campaign_file
from campaign.scheduler import step_seed
from campaign.surrogate.training import prepare_training_set, train_surrogate
from campaign.surrogate.tuning import tune_hyperparameters

#: Evaluation budget per example, initial design included.
BUDGETS = {"gaussian-4d": 1024, "banana-2d": 512, "bimodal-6d": 1536, "infinite-region": 512}
#: (strategy, refine) pairs; refine=False turns off the quadratic refinement point.
RUNS = (("committee", True), ("gp", True), ("random", False), ("committee", False), ("gp", False))
MINIMUM_TOLERANCE = 0.1
COVERAGE = 0.95
TEST_POINTS = 1000


@dataclass
class RunResult:
    """Evaluations until each criterion was met (None: not within the budget), and the run's cost."""

    minimum: int | None = None
    coverage: int | None = None
    posterior_coverage: int | None = None
    modes: int | None = None
    evaluations: int = 0
    final_coverage: float = 0.0
    final_posterior_coverage: float = 0.0
    seconds: float = 0.0
    steps: int = 0
    phase_seconds: dict = field(default_factory=lambda: {"tune": 0.0, "train": 0.0, "propose": 0.0})


@dataclass
class Example:
    """An analytic example with its known answer."""

    name: str
    spec: object
    module: object
    minima: np.ndarray
    minima_chi2: np.ndarray

    @property
    def chi2_min(self) -> float:
        return float(self.minima_chi2.min())

    def chi2(self, x: np.ndarray) -> np.ndarray:
        names = self.spec.space.names
        return np.array([self.module.chi2(**dict(zip(names, row))) for row in x], dtype=float)


def load_example(name: str) -> Example:
    """Load an example's campaign file and likelihood module, and its known minima."""
    root = Path(__file__).resolve().parents[1] / "examples" / name
    spec = load_campaign_file(root / "campaign.yaml")
    module_spec = importlib.util.spec_from_file_location(f"bench_{name.replace('-', '_')}", root / "likelihood.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)

    if hasattr(module, "TRUE_MINIMA"):
        minima, minima_chi2 = np.atleast_2d(module.TRUE_MINIMA), np.asarray(module.CHI2_MINIMA, dtype=float)
    elif hasattr(module, "TRUE_MINIMUM"):
        minima, minima_chi2 = np.atleast_2d(module.TRUE_MINIMUM), np.array([float(module.CHI2_MIN)])
    else:
        # The Gaussian example exports its mean, where chi2 is 0.
        minima, minima_chi2 = np.atleast_2d(module.MEAN), np.array([0.0])
    return Example(name, spec, module, minima, minima_chi2)


def true_low_test_points(example: Example, delta_chi2: float, rng: np.random.Generator) -> np.ndarray:
    """Draw TEST_POINTS points uniform in the true low region by rejection sampling around each minimum.

    Each minimum gets a box in unit-cube coordinates that is doubled until
    no accepted point lies in its outer tenth, so the box contains the whole
    region around that minimum. Boxes get draws in proportion to their
    volume, and a point that falls into an earlier box is dropped, so the
    union of the regions is sampled uniformly.

    Returns:
        Physical values, shape (TEST_POINTS, dim).
    """
    space = example.spec.space
    threshold = example.chi2_min + delta_chi2
    centres = space.to_unit(example.minima)
    half_widths = [_enclosing_half_width(example, centre, threshold, rng) for centre in centres]
    volumes = np.array([np.prod(np.minimum(c + h, 1) - np.maximum(c - h, 0)) for c, h in zip(centres, half_widths)])

    accepted = np.empty((0, space.dim))
    while len(accepted) < TEST_POINTS:
        for k, (centre, half_width) in enumerate(zip(centres, half_widths)):
            draws = _uniform_in_box(centre, half_width, int(np.ceil(4000 * volumes[k] / volumes.max())), rng)
            for earlier in range(k):
                inside = np.all(np.abs(draws - centres[earlier]) <= half_widths[earlier], axis=1)
                draws = draws[~inside]
            x = space.from_unit(draws)
            chi2 = example.chi2(x)
            with np.errstate(invalid="ignore"):
                low = np.isfinite(chi2) & (chi2 < threshold)
            accepted = np.vstack([accepted, x[low]])
    return accepted[rng.permutation(len(accepted))[:TEST_POINTS]]


def _enclosing_half_width(example: Example, centre: np.ndarray, threshold: float, rng) -> float:
    half_width = 0.02
    while half_width < 1.0:
        draws = _uniform_in_box(centre, half_width, 4000, rng)
        with np.errstate(invalid="ignore"):
            chi2 = example.chi2(example.spec.space.from_unit(draws))
            low = draws[np.isfinite(chi2) & (chi2 < threshold)]
        edge = np.abs(low - centre).max(axis=1) > 0.9 * half_width
        # A box cut by the unit cube's faces is not an edge of the region there.
        inside_cube = np.all((low > 1e-9) & (low < 1 - 1e-9), axis=1)
        if not (edge & inside_cube).any():
            return half_width
        half_width *= 2
    return half_width


def _uniform_in_box(centre: np.ndarray, half_width: float, n: int, rng) -> np.ndarray:
    low, high = np.maximum(centre - half_width, 0.0), np.minimum(centre + half_width, 1.0)
    return low + rng.random((n, len(centre))) * (high - low)


def run_strategy(example: Example, strategy: str, refine: bool, budget: int, test_points: np.ndarray) -> RunResult:
    """Run active learning like ``campaign run --max-evaluations budget`` and record when each criterion is met."""
    settings, space = example.spec.settings, example.spec.space
    weights = np.exp(-0.5 * (example.chi2(test_points) - example.chi2_min))
    weights /= weights.sum()
    delta = settings.low_region_width(space.dim)
    x = space.design(settings.initial_points, settings.initial_design, seed=step_seed(settings.seed, 1, "design"))
    chi2 = example.chi2(x)
    result = RunResult()
    hyperparameters, tuned_n, number = None, 0, 0
    start = time.perf_counter()
    while True:
        _check_minima(example, x, chi2, result)
        if len(x) >= budget or _all_met(example, result):
            break
        number += 1
        training = prepare_training_set(space, x, chi2, delta)
        seed = step_seed(settings.seed, number, "train")
        clock = time.perf_counter()
        if hyperparameters is None or len(x) >= settings.retune_factor * tuned_n:
            hyperparameters = tune_hyperparameters(training, iterations=settings.tuning_iterations, seed=seed,
                                                   threads=settings.threads)
            tuned_n = len(x)
        result.phase_seconds["tune"] += time.perf_counter() - clock

        clock = time.perf_counter()
        committee = settings.committee_size if strategy == "committee" else 0
        model, _ = train_surrogate(space, training, hyperparameters, seed=seed, threads=settings.threads,
                                   committee_size=committee)
        result.phase_seconds["train"] += time.perf_counter() - clock
        classified_low = model.classifier_margin(test_points) > 0
        result.final_coverage = float(classified_low.mean())
        result.final_posterior_coverage = float(weights @ classified_low)
        if result.coverage is None and result.final_coverage >= COVERAGE:
            result.coverage = len(x)
        if result.posterior_coverage is None and result.final_posterior_coverage >= COVERAGE:
            result.posterior_coverage = len(x)

        clock = time.perf_counter()
        batch = propose_batch(
            space, model, x, chi2, strategy=strategy, batch_size=min(settings.batch_size, budget - len(x)),
            exploration_fraction=settings.exploration_fraction, n_candidates=settings.n_candidates,
            rng=np.random.default_rng(step_seed(settings.seed, number, "propose")), threads=settings.threads,
            refine=refine,
        )
        result.phase_seconds["propose"] += time.perf_counter() - clock
        x = np.vstack([x, batch.x])
        chi2 = np.append(chi2, example.chi2(batch.x))
    result.evaluations, result.steps, result.seconds = len(x), number, time.perf_counter() - start
    return result


def _check_minima(example: Example, x: np.ndarray, chi2: np.ndarray, result: RunResult) -> None:
    """Record the evaluation count when the global minimum, and then every minimum, has been reached."""
    finite = np.isfinite(chi2)
    if result.minimum is None and finite.any() and chi2[finite].min() <= example.chi2_min + MINIMUM_TOLERANCE:
        result.minimum = len(x)
    if len(example.minima) < 2 or result.modes is not None or not finite.any():
        return
    nearest = _nearest_minimum(example, x[finite])
    reached = [
        (nearest == k).any() and chi2[finite][nearest == k].min() <= example.minima_chi2[k] + MINIMUM_TOLERANCE
        for k in range(len(example.minima))
    ]
    if all(reached):
        result.modes = len(x)


def _nearest_minimum(example: Example, x: np.ndarray) -> np.ndarray:
    space = example.spec.space
    distances = ((space.to_unit(x)[:, None, :] - space.to_unit(example.minima)[None]) ** 2).sum(axis=2)
    return np.argmin(distances, axis=1)


def _all_met(example: Example, result: RunResult) -> bool:
    modes_met = len(example.minima) < 2 or result.modes is not None
    return result.minimum is not None and result.coverage is not None and modes_met


def format_table(rows: list[tuple[str, str, bool, RunResult]]) -> str:
    """Write the results as a markdown table; ``>N`` means not reached within N evaluations."""
    lines = [
        "| example | strategy | refinement point | (a) best chi2 | (b) low region | (b') posterior mass | "
        "(c) all minima | (b) / (b') at end | steps | seconds (tune / train / propose) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, strategy, refine, result in rows:
        def cell(value):
            return f">{result.evaluations}" if value is None else str(value)

        modes = cell(result.modes) if name == "bimodal-6d" else "-"
        phases = " / ".join(f"{result.phase_seconds[p]:.0f}" for p in ("tune", "train", "propose"))
        lines.append(
            f"| {name} | {strategy} | {'on' if refine else 'off'} | {cell(result.minimum)} | {cell(result.coverage)} "
            f"| {cell(result.posterior_coverage)} | {modes} "
            f"| {result.final_coverage:.1%} / {result.final_posterior_coverage:.1%} | {result.steps} "
            f"| {result.seconds:.0f} ({phases}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="*", default=list(BUDGETS), help="examples to run (directory names)")
    parser.add_argument("--strategies", nargs="*", default=sorted({s for s, _ in RUNS}),
                        help="strategies to run, each with and without the refinement point as in RUNS")
    parser.add_argument("--no-write", action="store_true", help="print the table without writing docs/benchmarks.md")
    args = parser.parse_args()

    rows = []
    for name in args.examples:
        example = load_example(name)
        delta = example.spec.settings.low_region_width(example.spec.space.dim)
        test_points = true_low_test_points(example, delta, np.random.default_rng(0))
        for strategy, refine in [run for run in RUNS if run[0] in args.strategies]:
            result = run_strategy(example, strategy, refine, BUDGETS[name], test_points)
            print(name, strategy, "refine" if refine else "no-refine", result, flush=True)
            rows.append((name, strategy, refine, result))
    table = format_table(rows)
    print(table)
    if not args.no_write:
        write_section("Active learning against space-filling sampling", table,
                      command="python -m benchmarks.bench_active_learning")


if __name__ == "__main__":
    main()
