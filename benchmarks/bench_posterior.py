"""Compiled prediction, emcee throughput, compile time and SHAP time, side by side.

Trains a regressor and a classifier of 300 trees of depth 6 on 6 parameters
(an analytic chi2), then measures in one run:

- 64-row batch prediction with the numba and tl2cgen backends against
  ``Booster.inplace_predict`` (median of repeated calls);
- compile time of each backend, with an empty cache;
- emcee walker-steps per second on the surrogate posterior, with the
  compiled predictor and with plain ``inplace_predict``;
- exact tree SHAP values (``pred_contribs`` and ``pred_interactions``) for 1,000 points.

Run: ``python -m benchmarks.bench_posterior``; writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

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


def median_call_seconds(function, repeat: int) -> float:
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def walker_steps_per_second(surrogate_chi2, space: ParameterSpace, walkers: int, steps: int) -> float:
    rng = np.random.default_rng(1)
    start = space.from_unit(0.5 + 0.05 * rng.standard_normal((walkers, space.dim)))
    options = SamplerOptions(n_walkers=walkers, max_steps=steps, seed=2, check_every=steps)
    began = time.perf_counter()
    run_sampler(log_probability(surrogate_chi2, space), start, options)
    return walkers * steps / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--walkers", type=int, default=128)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()

    model = train_model()
    rows = np.random.default_rng(3).random((64, DIM))
    with tempfile.TemporaryDirectory() as directory:
        predictors = {}
        compile_seconds = {}
        for backend in ("numba", "tl2cgen"):
            began = time.perf_counter()
            predictors[backend] = BoosterPredictor(model.regressor, backend, cache=Path(directory))
            compile_seconds[backend] = time.perf_counter() - began
        model.regressor.set_param({"nthread": 1})
        batch = {"xgboost inplace_predict": median_call_seconds(
            lambda: model.regressor.inplace_predict(rows, predict_type="margin"), args.repeat)}
        for backend, predictor in predictors.items():
            batch[backend] = median_call_seconds(lambda: predictor.predict_margin(rows), args.repeat)

        throughput = {}
        for backend in ("numba", "xgboost"):
            surrogate = CompiledSurrogate(model, backend, cache=Path(directory))
            throughput[backend] = walker_steps_per_second(surrogate.chi2, model.space, args.walkers, args.steps)

    features = np.random.default_rng(4).random((1000, DIM))
    model.regressor.set_param({"nthread": 1})
    began = time.perf_counter()
    shap_values(model.regressor, features, interactions=False)
    shap_contribs = time.perf_counter() - began
    began = time.perf_counter()
    shap_values(model.regressor, features, interactions=True)
    shap_both = time.perf_counter() - began

    base = batch["xgboost inplace_predict"]
    lines = [
        f"Regressor and classifier of {TREES} trees of depth {DEPTH} on {DIM} parameters, one thread.",
        "",
        "| 64-row batch predictor | µs per call | speed vs inplace_predict | compile s (empty cache) |",
        "| --- | ---: | ---: | ---: |",
        f"| xgboost inplace_predict | {base * 1e6:,.0f} | 1.0x | - |",
    ] + [
        f"| {backend} | {batch[backend] * 1e6:,.0f} | {base / batch[backend]:.2f}x | {compile_seconds[backend]:.1f} |"
        for backend in predictors
    ] + [
        "",
        f"emcee ({args.walkers} walkers x {args.steps} steps, DE 0.8 + DE-snooker 0.2, vectorized, "
        "regressor and classifier per call):",
        "",
        "| predictor | walker-steps/s |",
        "| --- | ---: |",
    ] + [f"| {backend} | {value:,.0f} |" for backend, value in throughput.items()] + [
        "",
        f"SHAP for 1,000 points: pred_contribs {shap_contribs:.2f} s, "
        f"pred_contribs + pred_interactions {shap_both:.2f} s.",
    ]
    write_section("Compiled surrogate, emcee and SHAP", "\n".join(lines), command="python -m benchmarks.bench_posterior")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
