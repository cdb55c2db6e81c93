"""Active learning against pure space-filling sampling on the analytic examples.

For each example and strategy, the loop of ``campaign step`` runs on arrays
with the example's true chi2: the same initial design, training and tuning
schedule, seeds and settings as the step, without the database and the
evaluation pool. It records the number of true evaluations (initial design
included) until

(a) the best chi2 is within 0.1 of the true minimum,
(b) at least 95% of true-low test points are classified low by the
    surrogate (classifier log-odds above the model version's threshold,
    calibrated by cross-validation for the campaign's ``low_recall``), and
    the volume classified low is at most MAX_VOLUME_RATIO times the true
    region's, so that classifying everything low does not count,
(b') the same with at least 95% of the posterior mass of the low region
    classified low: the test points of (b) weighted by
    exp(-(chi2 - chi2_min) / 2), and
(c) for an example with several minima, each minimum has a point within 0.1
    of its own chi2.

Test points of (b) are uniform in the true region chi2 < chi2_min + delta_chi2
(rejection sampling in a box around each known minimum), so the edge of the
region weighs as much as its centre. The ``random`` strategy proposes
space-filling batches only but trains the same surrogate, for (b).

A lower threshold classifies more of the true region low and also more
points outside it. So the volume classified low is compared with the true
region's volume, both counted on uniform draws in boxes PROBE_ENLARGEMENT
times wider than the boxes around each minimum; volume classified low
outside those boxes is not counted.

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
from campaign.surrogate.training import cross_validate_classifier, prepare_training_set, train_surrogate
from campaign.surrogate.tuning import tune_hyperparameters

#: Evaluation budget per example, initial design included.
BUDGETS = {"gaussian-4d": 1024, "banana-2d": 512, "bimodal-6d": 1536, "infinite-region": 512}
#: (strategy, refine) pairs; refine=False turns off the quadratic refinement point.
RUNS = (("committee", True), ("gp", True), ("random", False), ("committee", False), ("gp", False))
MINIMUM_TOLERANCE = 0.1
COVERAGE = 0.95
TEST_POINTS = 1000
#: Half-widths of the volume probe's boxes, relative to the boxes that enclose the true low region.
PROBE_ENLARGEMENT = 1.5
#: The volume probe draws until this many of its points are truly low.
PROBE_LOW_POINTS = 4000
#: Largest volume classified low, relative to the true low region's, for (b) and (b').
MAX_VOLUME_RATIO = 1.5


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
    final_volume_ratio: float = 0.0
    final_precision: float = 0.0
    final_threshold: float = 0.0
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


@dataclass
class LowRegionBoxes:
    """Boxes in unit-cube coordinates around each minimum that enclose the true low region."""

    centres: np.ndarray
    half_widths: list[float]

    def volumes(self, enlargement: float = 1.0) -> np.ndarray:
        return np.array([
            np.prod(np.minimum(c + enlargement * h, 1) - np.maximum(c - enlargement * h, 0))
            for c, h in zip(self.centres, self.half_widths)
        ])

    def draw_uniform(self, n: int, rng: np.random.Generator, enlargement: float = 1.0) -> np.ndarray:
        """Draw about ``n`` points uniform in the union of the boxes, in unit-cube coordinates.

        Boxes get draws in proportion to their volume, and a point that
        falls into an earlier box is dropped.
        """
        volumes = self.volumes(enlargement)
        draws = []
        for k, (centre, half_width) in enumerate(zip(self.centres, self.half_widths)):
            box_draws = _uniform_in_box(centre, enlargement * half_width, int(np.ceil(n * volumes[k] / volumes.sum())), rng)
            for earlier in range(k):
                inside = np.all(np.abs(box_draws - self.centres[earlier]) <= enlargement * self.half_widths[earlier], axis=1)
                box_draws = box_draws[~inside]
            draws.append(box_draws)
        return np.vstack(draws)


def low_region_boxes(example: Example, delta_chi2: float, rng: np.random.Generator) -> LowRegionBoxes:
    """Find a box around each minimum that encloses its part of the true low region.

    Each box is doubled until no accepted point lies in its outer tenth.
    """
    threshold = example.chi2_min + delta_chi2
    centres = example.spec.space.to_unit(example.minima)
    return LowRegionBoxes(centres, [_enclosing_half_width(example, centre, threshold, rng) for centre in centres])


def true_low_test_points(example: Example, boxes: LowRegionBoxes, delta_chi2: float,
                         rng: np.random.Generator) -> np.ndarray:
    """Draw TEST_POINTS points uniform in the true low region by rejection sampling in ``boxes``.

    Returns:
        Physical values, shape (TEST_POINTS, dim).
    """
    space = example.spec.space
    accepted = np.empty((0, space.dim))
    while len(accepted) < TEST_POINTS:
        x = space.from_unit(boxes.draw_uniform(4000 * len(boxes.centres), rng))
        accepted = np.vstack([accepted, x[_truly_low(example, x, delta_chi2)]])
    return accepted[rng.permutation(len(accepted))[:TEST_POINTS]]


def volume_probe(example: Example, boxes: LowRegionBoxes, delta_chi2: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw points uniform in the enlarged boxes until PROBE_LOW_POINTS of them are truly low.

    Returns:
        Physical values, shape (n, dim), and whether each is truly low, shape (n,).
    """
    space = example.spec.space
    points, low = [], []
    while sum(map(np.sum, low)) < PROBE_LOW_POINTS:
        x = space.from_unit(boxes.draw_uniform(20000, rng, PROBE_ENLARGEMENT))
        points.append(x)
        low.append(_truly_low(example, x, delta_chi2))
    return np.vstack(points), np.concatenate(low)


def _truly_low(example: Example, x: np.ndarray, delta_chi2: float) -> np.ndarray:
    chi2 = example.chi2(x)
    with np.errstate(invalid="ignore"):
        return np.isfinite(chi2) & (chi2 < example.chi2_min + delta_chi2)


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


def run_strategy(example: Example, strategy: str, refine: bool, budget: int, test_points: np.ndarray,
                 probe: tuple[np.ndarray, np.ndarray], calibrate: bool = True) -> RunResult:
    """Run active learning like ``campaign run --max-evaluations budget`` and record when each criterion is met.

    Args:
        test_points: Output of :func:`true_low_test_points`.
        probe: Output of :func:`volume_probe`, compared with the last model's low region.
        calibrate: Calibrate the low threshold as the step does; when False,
            points are classified low at log-odds 0 (probability 0.5).
    """
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
        calibration = cross_validate_classifier(training, hyperparameters, seed=seed, threads=settings.threads,
                                                low_recall=settings.low_recall)
        committee = settings.committee_size if strategy == "committee" else 0
        threshold = calibration["low_margin_threshold"] if calibrate else 0.0
        model, _ = train_surrogate(space, training, hyperparameters, seed=seed, threads=settings.threads,
                                   committee_size=committee, low_margin_threshold=threshold)
        result.phase_seconds["train"] += time.perf_counter() - clock
        classified_low = model.is_low(test_points)
        result.final_coverage = float(classified_low.mean())
        result.final_posterior_coverage = float(weights @ classified_low)
        _check_coverage(model, probe, len(x), result)

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
    if number:
        _measure_volume(model, probe, result)
    return result


def _check_coverage(model, probe: tuple[np.ndarray, np.ndarray], n_evaluated: int, result: RunResult) -> None:
    """Record the evaluation count when (b) and (b') are first met; the volume is measured only when needed."""
    needs_coverage = result.coverage is None and result.final_coverage >= COVERAGE
    needs_posterior = result.posterior_coverage is None and result.final_posterior_coverage >= COVERAGE
    if not (needs_coverage or needs_posterior):
        return
    _measure_volume(model, probe, result)
    if result.final_volume_ratio > MAX_VOLUME_RATIO:
        return
    if needs_coverage:
        result.coverage = n_evaluated
    if needs_posterior:
        result.posterior_coverage = n_evaluated


def _measure_volume(model, probe: tuple[np.ndarray, np.ndarray], result: RunResult) -> None:
    """Record the volume classified low relative to the true low region's, and the share of it that is truly low."""
    probe_x, truly_low = probe
    classified_low = model.is_low(probe_x)
    result.final_volume_ratio = float(classified_low.sum() / truly_low.sum())
    result.final_precision = float((classified_low & truly_low).sum() / max(classified_low.sum(), 1))
    result.final_threshold = model.low_margin_threshold


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
        "(c) all minima | (b) / (b') at end | classified / true volume at end | precision at end | "
        "threshold at end | steps | seconds (tune / train / propose) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, strategy, refine, result in rows:
        def cell(value):
            return f">{result.evaluations}" if value is None else str(value)

        modes = cell(result.modes) if name == "bimodal-6d" else "-"
        phases = " / ".join(f"{result.phase_seconds[p]:.0f}" for p in ("tune", "train", "propose"))
        lines.append(
            f"| {name} | {strategy} | {'on' if refine else 'off'} | {cell(result.minimum)} | {cell(result.coverage)} "
            f"| {cell(result.posterior_coverage)} | {modes} "
            f"| {result.final_coverage:.1%} / {result.final_posterior_coverage:.1%} "
            f"| {result.final_volume_ratio:.2f} | {result.final_precision:.1%} | {result.final_threshold:.2f} "
            f"| {result.steps} "
            f"| {result.seconds:.0f} ({phases}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="*", default=list(BUDGETS), help="examples to run (directory names)")
    parser.add_argument("--strategies", nargs="*", default=sorted({s for s, _ in RUNS}),
                        help="strategies to run, each with and without the refinement point as in RUNS")
    parser.add_argument("--no-write", action="store_true", help="print the table without writing docs/benchmarks.md")
    parser.add_argument("--uncalibrated", action="store_true",
                        help="classify low at log-odds 0 (probability 0.5) instead of the calibrated threshold; "
                             "prints the table without writing docs/benchmarks.md")
    args = parser.parse_args()

    rows = []
    for name in args.examples:
        example = load_example(name)
        delta = example.spec.settings.low_region_width(example.spec.space.dim)
        rng = np.random.default_rng(0)
        boxes = low_region_boxes(example, delta, rng)
        test_points = true_low_test_points(example, boxes, delta, rng)
        probe = volume_probe(example, boxes, delta, rng)
        for strategy, refine in [run for run in RUNS if run[0] in args.strategies]:
            result = run_strategy(example, strategy, refine, BUDGETS[name], test_points, probe,
                                  calibrate=not args.uncalibrated)
            print(name, strategy, "refine" if refine else "no-refine", result, flush=True)
            rows.append((name, strategy, refine, result))
    table = format_table(rows)
    print(table)
    if not args.no_write and not args.uncalibrated:
        write_section("Active learning against space-filling sampling", table,
                      command="python -m benchmarks.bench_active_learning")


if __name__ == "__main__":
    main()
