"""Active learning against pure space-filling sampling on the analytic examples.

For each example and strategy, the loop of ``campaign step`` runs on arrays
(training, tuning on growth, batch proposal) with the example's true chi2,
and records the number of true evaluations until

(a) the best chi2 is within 0.1 of the true minimum, and
(b) at least 95% of true-low test points are classified low by the surrogate.

The database and the evaluation pool are left out, so the numbers measure
the method; ``campaign run`` makes the same proposals for the same seed.

    python -m benchmarks.bench_active_learning
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np

from benchmarks.report import write_section
from campaign.acquisition import propose_batch
from campaign.config import load_campaign_file
from campaign.surrogate.training import prepare_training_set, train_surrogate
from campaign.surrogate.tuning import tune_hyperparameters

EXAMPLES = {"gaussian-4d": 1024, "banana-2d": 512, "bimodal-6d": 1536, "infinite-region": 512}
STRATEGIES = ("committee", "gp", "random")
TEST_POINTS = 400


def load_example(name: str):
    root = Path(__file__).resolve().parents[1] / "examples" / name
    spec = load_campaign_file(root / "campaign.yaml")
    module_spec = importlib.util.spec_from_file_location(f"bench_{name.replace('-', '_')}", root / "likelihood.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return spec, module


def true_chi2(module, names, x: np.ndarray) -> np.ndarray:
    return np.array([module.chi2(**dict(zip(names, row))) for row in x], dtype=float)


def true_low_test_points(spec, module, delta: float, rng) -> np.ndarray:
    """Draw test points of the true low region around the known minima."""
    space = spec.space
    minima = np.atleast_2d(getattr(module, "TRUE_MINIMA", getattr(module, "TRUE_MINIMUM", None)))
    if minima.dtype == object:
        minima = np.atleast_2d(module.MEAN)
    chi2_min = float(getattr(module, "CHI2_MIN", 0.0))
    width = (space.high - space.low) * 0.15
    draws = np.vstack([m + rng.standard_normal((4000, space.dim)) * width for m in minima])
    draws = draws[space.contains(draws)]
    chi2 = true_chi2(module, space.names, draws)
    low = draws[np.isfinite(chi2) & (chi2 < chi2_min + delta)]
    return low[:TEST_POINTS]


def run_strategy(spec, module, strategy: str, budget: int, test_points: np.ndarray) -> dict:
    settings, space = spec.settings, spec.space
    delta = settings.low_region_width(space.dim)
    chi2_min_true = float(getattr(module, "CHI2_MIN", 0.0))
    x = space.design(settings.initial_points, settings.initial_design, seed=settings.seed)
    chi2 = true_chi2(module, space.names, x)
    hyperparameters, tuned_n, number = None, 0, 0
    found_minimum = covered = None
    start = time.perf_counter()
    while len(x) < budget and (found_minimum is None or covered is None):
        number += 1
        training = prepare_training_set(space, x, chi2, delta)
        seed = int(np.random.SeedSequence([settings.seed, number, 1]).generate_state(1)[0])
        if hyperparameters is None or len(x) >= settings.retune_factor * tuned_n:
            hyperparameters, tuned_n = tune_hyperparameters(training, iterations=6, seed=seed, threads=1), len(x)
        committee = settings.committee_size if strategy == "committee" else 0
        model, _ = train_surrogate(space, training, hyperparameters, seed=seed, threads=1, committee_size=committee)
        if covered is None and (model.classifier_margin(test_points) > 0).mean() >= 0.95:
            covered = len(x)
        batch = propose_batch(space, model, x, chi2, strategy=strategy, batch_size=min(settings.batch_size, budget - len(x)),
                              exploration_fraction=settings.exploration_fraction, n_candidates=2048,
                              rng=np.random.default_rng(np.random.SeedSequence([settings.seed, number, 2])))
        x = np.vstack([x, batch.x])
        chi2 = np.append(chi2, true_chi2(module, space.names, batch.x))
        if found_minimum is None and np.nanmin(np.where(np.isfinite(chi2), chi2, np.nan)) <= chi2_min_true + 0.1:
            found_minimum = len(x)
    modes = None
    if hasattr(module, "TRUE_MINIMA") and len(np.atleast_2d(module.TRUE_MINIMA)) > 1:
        minima = np.atleast_2d(module.TRUE_MINIMA)
        best = np.nanmin(np.where(np.isfinite(chi2), chi2, np.nan))
        low = x[np.isfinite(chi2) & (chi2 < best + delta)]
        nearest = np.argmin(((low[:, None, :] - minima[None]) ** 2).sum(axis=2), axis=1)
        modes = len(np.unique(nearest))
    return {"minimum": found_minimum, "coverage": covered, "evaluations": len(x), "modes": modes,
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="*", default=list(EXAMPLES))
    args = parser.parse_args()
    rows = []
    for name in args.examples:
        spec, module = load_example(name)
        delta = spec.settings.low_region_width(spec.space.dim)
        test_points = true_low_test_points(spec, module, delta, np.random.default_rng(0))
        for strategy in STRATEGIES:
            result = run_strategy(spec, module, strategy, EXAMPLES[name], test_points)
            print(name, strategy, result, flush=True)
            rows.append((name, strategy, result))
    lines = [
        "True evaluations (initial design included) until (a) the best chi2 is within 0.1 of the true minimum and "
        "(b) at least 95% of true-low test points are classified low; `>N` means not reached within the budget N. "
        "Settings from each example's campaign.yaml, 6 tuning iterations, 2048 candidates, one thread.",
        "",
        "| example | strategy | (a) best chi2 | (b) low region | modes found | seconds |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, strategy, result in rows:
        budget = EXAMPLES[name]
        cells = [str(result[key]) if result[key] is not None else f">{result['evaluations']}" for key in ("minimum", "coverage")]
        modes = "-" if result["modes"] is None else str(result["modes"])
        lines.append(f"| {name} | {strategy} | {cells[0]} | {cells[1]} | {modes} | {result['seconds']:.0f} |")
    write_section("Active learning against space-filling sampling", "\n".join(lines),
                  command="python -m benchmarks.bench_active_learning")


if __name__ == "__main__":
    main()
