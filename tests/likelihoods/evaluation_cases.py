"""Likelihoods with known behaviour for the evaluation tests.

Each call appends one line, ``x y pid``, to the file named by
``$CAMPAIGN_EVAL_LOG`` when it is set, so tests can count evaluations per point.
"""

import os
import random
import time

import numpy as np


def _log(x, y):
    path = os.environ.get("CAMPAIGN_EVAL_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(f"{x!r} {y!r} {os.getpid()}\n")


def quadratic(x, y):
    """chi2 = x^2 + y^2, with an observable."""
    _log(x, y)
    return {"chi2": x * x + y * y, "radius": (x * x + y * y) ** 0.5}


def sleepy(x, y):
    """chi2 = x^2 + y^2 after sleeping ``$CAMPAIGN_SLEEP`` seconds (default 0.5)."""
    time.sleep(float(os.environ.get("CAMPAIGN_SLEEP", "0.5")))
    _log(x, y)
    return x * x + y * y


def slow_if_positive(x, y):
    """Return x^2 + y^2 at once for x <= 0, after 60 s for x > 0."""
    if x > 0:
        time.sleep(60)
    _log(x, y)
    return x * x + y * y


def special(x, y):
    """Return the value selected by round(x): 1 NaN, 2 +inf, 3 -inf, 4 a string, 5 None, 6 an array.

    round(x) == 7 raises ValueError; other points return x^2 + y^2.
    """
    if round(x) == 7:
        raise ValueError(f"no physics at x={x}")
    values = {1: float("nan"), 2: float("inf"), 3: float("-inf"), 4: "12.5", 5: None, 6: np.array([1.0, 2.0])}
    return values.get(round(x), x * x + y * y)


def crashing(x, y):
    """End the process at once, as a segmentation fault would."""
    os._exit(3)


def stochastic(x, y, seed=None):
    """Return draws from the seed argument and from the global random states."""
    return float(np.random.default_rng(seed).normal()) + np.random.random() + random.random()
