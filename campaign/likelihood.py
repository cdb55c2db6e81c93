"""Loading and calling user likelihoods.

A likelihood is either a Python callable, called with one keyword argument
per parameter, or an external command that reads a JSON object of parameter
values on stdin and writes a JSON object on stdout. Both return chi2 or the
log-likelihood, optionally with extra outputs, and :func:`call_likelihood`
turns either into ``(chi2, outputs)``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import numbers
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from campaign.config import LikelihoodRef
from campaign.errors import ConfigError, LikelihoodError

__all__ = ["Likelihood", "load_likelihood", "check_likelihood", "derive_seed"]

STDERR_EXCERPT = 2000


def derive_seed(campaign_seed: int, point_id: int) -> int:
    """Derive a reproducible 32-bit evaluation seed from the campaign seed and a point id."""
    digest = hashlib.sha256(f"{campaign_seed}:{point_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class Likelihood:
    """A loaded likelihood, ready to be called in this process.

    Args:
        ref: The campaign's likelihood reference.
        names: Parameter names, in storage order.
    """

    def __init__(self, ref: LikelihoodRef, names: tuple[str, ...]):
        self.ref = ref
        self.names = names
        self._function: Callable | None = None
        self._accepts_seed = False
        if ref.python is not None:
            self._function = load_python_callable(ref.python)
            self._accepts_seed = _accepts_keyword(self._function, "seed")

    def __call__(self, params: Mapping[str, float], seed: int | None = None) -> tuple[float, dict]:
        """Evaluate at one point and return ``(chi2, outputs)``.

        Raises:
            LikelihoodError: The call failed or returned an invalid value.
        """
        if seed is not None:
            # Physics codes often draw from the global random state.
            random.seed(seed)
            np.random.seed(seed)
        if self._function is not None:
            kwargs = dict(params)
            if self._accepts_seed and seed is not None:
                kwargs["seed"] = seed
            result = self._function(**kwargs)
        else:
            result = self._run_command(params, seed)
        return normalize_result(result, self.ref.returns)

    def _run_command(self, params: Mapping[str, float], seed: int | None) -> Any:
        env = dict(os.environ)
        if seed is not None:
            env["CAMPAIGN_SEED"] = str(seed)
        completed = subprocess.run(
            list(self.ref.command),
            input=json.dumps(dict(params)),
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if completed.returncode != 0:
            raise LikelihoodError(
                f"command exited with status {completed.returncode}; stderr: "
                f"{_excerpt(completed.stderr)}"
            )
        try:
            return json.loads(completed.stdout)
        except json.JSONDecodeError as exc:
            raise LikelihoodError(
                f"command wrote invalid JSON on stdout ({exc.msg}): {_excerpt(completed.stdout)!r}; "
                f"stderr: {_excerpt(completed.stderr)}"
            ) from None


def load_likelihood(ref: LikelihoodRef, names: tuple[str, ...]) -> Likelihood:
    """Load a likelihood; see :class:`Likelihood`."""
    return Likelihood(ref, names)


def check_likelihood(ref: LikelihoodRef, names: tuple[str, ...]) -> None:
    """Check that a likelihood can be loaded and accepts the parameter names.

    Raises:
        ConfigError: The module, file, function or command does not exist, or
            the function's signature does not take the parameters.
    """
    if ref.command is not None:
        executable = ref.command[0]
        if shutil.which(executable) is None:
            raise ConfigError(
                f"likelihood.command: executable {executable!r} not found or not executable; "
                "give a path to an executable file or a program on PATH"
            )
        return
    function = load_python_callable(ref.python)
    _check_signature(function, names, ref.python)


def load_python_callable(reference: str) -> Callable:
    """Import ``"package.module:function"`` or ``"path/to/file.py:function"``.

    Raises:
        ConfigError: The module or file cannot be imported or has no such callable.
    """
    target, _, attribute = reference.rpartition(":")
    if target.endswith(".py") or os.sep in target or "/" in target:
        module = _import_file(target, reference)
    else:
        try:
            module = importlib.import_module(target)
        except Exception as exc:
            raise ConfigError(
                f"likelihood.python: cannot import module {target!r} of {reference!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ConfigError(f"likelihood.python: {target!r} has no callable named {attribute!r}")
    return function


def _import_file(path: str, reference: str):
    file = Path(path).resolve()
    if not file.is_file():
        raise ConfigError(
            f"likelihood.python: file {path!r} of {reference!r} not found "
            f"(paths are relative to the working directory, {os.getcwd()})"
        )
    module_name = "campaign_likelihood_" + hashlib.sha1(str(file).encode()).hexdigest()[:12]
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise ConfigError(f"likelihood.python: importing {path!r} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _accepts_keyword(function: Callable, name: str) -> bool:
    """Tell whether ``function`` names ``name`` as a parameter.

    A ``**kwargs`` catch-all does not count: a likelihood written as
    ``chi2(**params)`` would otherwise receive the seed as a parameter.
    """
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters


def _check_signature(function: Callable, names: tuple[str, ...], reference: str) -> None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(**{name: 0.0 for name in names})
    except TypeError as exc:
        raise ConfigError(
            f"likelihood.python: {reference} cannot be called with the parameters "
            f"{', '.join(names)} as keyword arguments: {exc}"
        ) from None


def normalize_result(result: Any, returns: str) -> tuple[float, dict]:
    """Turn a likelihood's return value into ``(chi2, outputs)``.

    Accepts a real number (also a numpy scalar or 0-d array) or a mapping with
    the number under ``returns`` plus extra outputs.

    Raises:
        LikelihoodError: The value is not a number or not such a mapping.
    """
    outputs: dict = {}
    if isinstance(result, Mapping):
        if returns not in result:
            raise LikelihoodError(
                f"likelihood returned a mapping without the key {returns!r} "
                f"(keys: {', '.join(map(str, result)) or 'none'})"
            )
        outputs = {str(k): _jsonable(v) for k, v in result.items() if k != returns}
        value = result[returns]
    else:
        value = result
    number = _as_float(value, returns)
    chi2 = number if returns == "chi2" else -2.0 * number
    return chi2, outputs


def _as_float(value: Any, returns: str) -> float:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        shape = f" of shape {value.shape}" if isinstance(value, np.ndarray) else ""
        raise LikelihoodError(
            f"likelihood must return a real number for {returns}, got {type(value).__name__}{shape}: "
            f"{_excerpt(repr(value), 200)}"
        )
    return float(value)


def _jsonable(value: Any) -> Any:
    """Convert numpy values and non-finite floats to JSON; non-finite floats become strings."""
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value).replace("inf", "Infinity").replace("nan", "NaN")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _excerpt(text: str, limit: int = STDERR_EXCERPT) -> str:
    text = (text or "").strip()
    if len(text) <= limit:
        return text
    return "..." + text[-limit:]
