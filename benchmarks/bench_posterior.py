"""Compiled prediction, emcee throughput, compile time and SHAP time, side by side.

Trains a regressor and a classifier of 300 trees of depth 6 on 6 parameters
(an analytic chi2), then measures in one run:

- 64-row batch prediction with the numba and tl2cgen backends against
  ``Booster.inplace_predict`` (median of repeated calls, in turns), and the surrogate
  chi2 (regressor and classifier) in one numba call against two
  ``inplace_predict`` calls;
- compile time of each backend, with an empty cache;
- emcee walker-steps per second on the surrogate posterior for several
  ensemble sizes, with the compiled predictor and with plain
  ``inplace_predict``, and with emcee's own (per-walker) moves;
- exact tree SHAP values (``pred_contribs`` and ``pred_interactions``) for 1,000 points.

Run: ``python -m benchmarks.bench_posterior``; writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import emcee
import numpy as np
import xgboost

from benchmarks.report import write_section
from campaign.explain import shap_values
from campaign.posterior import SamplerOptions, log_probability, run_sampler
from campaign.space import Parameter, ParameterSpace
from campaign.surrogate.compiled import BoosterPredictor, CompiledSurrogate
from campaign.surrogate.model import SurrogateModel

DIM = 6
TREES = 300
DEPTH = 6


def train_model(seed: int = 0) -> SurrogateModel:
    rng = np.random.default_rng(seed)
    space = ParameterSpace([Parameter(f"p{i}", -1.0, 1.0) for i in range(DIM)])
    features = rng.random((20000, DIM))
    chi2 = 400.0 * ((features - 0.5) ** 2).sum(axis=1)
    params = {"max_depth": DEPTH, "eta": 0.05, "nthread": 1, "seed": seed}
    regressor = xgboost.train(params, xgboost.DMatrix(features, label=chi2), TREES)
    labels = (chi2 < 20.0).astype(float)
    classifier = xgboost.train({**params, "objective": "binary:logistic"}, xgboost.DMatrix(features, label=labels), TREES)
    return SurrogateModel(space=space, classifier=classifier, regressor=regressor, chi2_min=0.0, delta_chi2=20.0)


def median_call_seconds(functions: dict, repeat: int, rounds: int = 10) -> dict:
    """Time every function ``repeat`` times and return each median in seconds.

    The functions take turns in ``rounds`` runs of consecutive calls, so all
    of them see the same changes in machine load, while each run starts with
    one untimed call that brings its model into the CPU caches.
    """
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            function()
            for _ in range(max(1, repeat // rounds)):
                start = time.perf_counter()
                function()
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def walker_steps_per_second(surrogate_chi2, space: ParameterSpace, walkers: int, steps: int) -> float:
    start = _start(space, walkers)
    options = SamplerOptions(n_walkers=walkers, max_steps=steps, seed=2, check_every=steps)
    began = time.perf_counter()
    run_sampler(log_probability(surrogate_chi2, space), start, options)
    return walkers * steps / (time.perf_counter() - began)


def emcee_moves_walker_steps_per_second(surrogate_chi2, space: ParameterSpace, walkers: int, steps: int) -> float:
    """Measure emcee 3.1.6's own sampler and DE moves, which loop over walkers in Python."""
    sampler = emcee.EnsembleSampler(
        walkers, space.dim, log_probability(surrogate_chi2, space), vectorize=True,
        moves=[(emcee.moves.DEMove(), 0.8), (emcee.moves.DESnookerMove(), 0.2)],
    )
    began = time.perf_counter()
    sampler.run_mcmc(emcee.State(_start(space, walkers), random_state=np.random.RandomState(2).get_state()), steps)
    return walkers * steps / (time.perf_counter() - began)


def _start(space: ParameterSpace, walkers: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    return space.from_unit(0.5 + 0.05 * rng.standard_normal((walkers, space.dim)))


def targets(batch_speedup: float, walker_steps: float, chi2_seconds_per_row: float, compile_seconds: float) -> list[str]:
    """State which performance targets this run met, with the reason for those it missed."""
    def verdict(met: bool) -> str:
        return "met" if met else "not met"

    return [
        "Targets:",
        "",
        f"- 64-row batch at least 5x faster than inplace_predict: {verdict(batch_speedup >= 5)} "
        f"({batch_speedup:.1f}x). Each of the 64 x 300 x 6 tree levels costs two dependent loads "
        "(the split, then the row's bin) and one unsigned comparison. Eight rows walk each tree "
        "together, so their loads overlap. The load of other processes slows it and XGBoost alike.",
        f"- emcee at least 100k walker-steps/s: {verdict(walker_steps >= 100_000)} "
        f"({walker_steps:,.0f} at best, {1e6 / walker_steps:.1f} µs per walker-step). The surrogate chi2 "
        f"takes {chi2_seconds_per_row * 1e6:.1f} µs per row; the rest is numpy work per call in the moves, "
        "the acceptance and the log-posterior (prior, box, unit cube), which is spread over more walkers "
        "as the ensemble grows.",
        f"- Compilation at most 10 s: {verdict(compile_seconds <= 10)} (numba {compile_seconds:.1f} s).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--walkers", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()

    model = train_model()
    rows = np.random.default_rng(3).random((64, DIM))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as directory:
        predictors = {}
        compile_seconds = {}
        for backend in ("numba", "tl2cgen"):
            began = time.perf_counter()
            predictors[backend] = BoosterPredictor(model.regressor, backend, cache=Path(directory))
            compile_seconds[backend] = time.perf_counter() - began
        model.regressor.set_param({"nthread": 1})
        batch_calls = {"xgboost inplace_predict": partial(model.regressor.inplace_predict, rows, predict_type="margin")}
        batch_calls |= {backend: partial(predictor.predict_margin, rows) for backend, predictor in predictors.items()}
        batch = median_call_seconds(batch_calls, args.repeat)

        surrogates = {backend: CompiledSurrogate(model, backend, cache=Path(directory)) for backend in ("numba", "xgboost")}
        physical = model.space.from_unit(rows)
        surrogate_batch = median_call_seconds(
            {backend: partial(surrogate.chi2, physical) for backend, surrogate in surrogates.items()}, args.repeat)

        throughput = {}
        for walkers in args.walkers:
            throughput[("numba", walkers)] = walker_steps_per_second(
                surrogates["numba"].chi2, model.space, walkers, args.steps)
        middle = args.walkers[len(args.walkers) // 2]
        throughput[("xgboost", middle)] = walker_steps_per_second(
            surrogates["xgboost"].chi2, model.space, middle, args.steps)
        emcee_moves = emcee_moves_walker_steps_per_second(surrogates["numba"].chi2, model.space, middle, args.steps)

    features = np.random.default_rng(4).random((1000, DIM))
    model.regressor.set_param({"nthread": 1})
    began = time.perf_counter()
    shap_values(model.regressor, features, interactions=False)
    shap_contribs = time.perf_counter() - began
    began = time.perf_counter()
    shap_values(model.regressor, features, interactions=True)
    shap_both = time.perf_counter() - began
    load_after = os.getloadavg()

    base = batch["xgboost inplace_predict"]
    lines = [
        f"Regressor and classifier of {TREES} trees of depth {DEPTH} on {DIM} parameters, one thread. "
        f"Load average (1 min) {load_before[0]:.1f} before and {load_after[0]:.1f} after the run: "
        "other processes shared the cores, so compare the rows of one run with each other.",
        "",
        "| 64-row batch predictor | µs per call | speed vs inplace_predict | compile s (empty cache) |",
        "| --- | ---: | ---: | ---: |",
        f"| xgboost inplace_predict | {base * 1e6:,.0f} | 1.0x | - |",
    ] + [
        f"| {backend} | {batch[backend] * 1e6:,.0f} | {base / batch[backend]:.2f}x | {compile_seconds[backend]:.1f} |"
        for backend in predictors
    ] + [
        "",
        "| 64-row surrogate chi2 (regressor + classifier + combination) | µs per call | speed |",
        "| --- | ---: | ---: |",
        f"| xgboost, two inplace_predict calls | {surrogate_batch['xgboost'] * 1e6:,.0f} | 1.0x |",
        f"| numba, one joint kernel call | {surrogate_batch['numba'] * 1e6:,.0f} | "
        f"{surrogate_batch['xgboost'] / surrogate_batch['numba']:.2f}x |",
        "",
        f"emcee ({args.steps} steps, DE 0.8 + DE-snooker 0.2, vectorized log-posterior: prior, "
        "regressor and classifier per call):",
        "",
        "| predictor | moves | walkers | walker-steps/s |",
        "| --- | --- | ---: | ---: |",
    ] + [
        f"| {backend} | campaign.moves | {walkers} | {value:,.0f} |" for (backend, walkers), value in throughput.items()
    ] + [
        f"| numba | emcee 3.1.6 DEMove + DESnookerMove | {middle} | {emcee_moves:,.0f} |",
        "",
        f"SHAP for 1,000 points: pred_contribs {shap_contribs:.2f} s, "
        f"pred_contribs + pred_interactions {shap_both:.2f} s.",
        "",
    ] + targets(base / batch["numba"], max(v for (b, _), v in throughput.items() if b == "numba"),
                surrogate_batch["numba"] / len(rows), compile_seconds["numba"])
    write_section("Compiled surrogate, emcee and SHAP", "\n".join(lines), command="python -m benchmarks.bench_posterior")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
