"""Parameter spaces: bounds, scales, priors and space-filling designs.

A :class:`ParameterSpace` maps between physical parameter values and the
unit cube. Parameters with ``scale="log"`` are uniform in log10 inside the
unit cube, so designs and surrogates see them on a log axis.
"""

from __future__ import annotations

import keyword
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from campaign.errors import ConfigError

__all__ = ["Parameter", "ParameterSpace", "RESERVED_NAMES", "DESIGNS"]

#: Column names of the per-campaign ``points_*`` and ``samples_*`` SQL views;
#: parameters may not use them, compared case-insensitively as SQL does.
RESERVED_NAMES = frozenset(
    {
        "id", "chi2", "status", "origin", "step", "attempts", "error", "outputs",
        "likelihood_version", "seed", "executor", "host", "pid", "user",
        "created_at", "created_by", "started_at", "evaluated_at", "eval_seconds",
        "chain_id", "iteration", "walker", "log_prob",
    }
)

SCALES = ("linear", "log")
PRIOR_KINDS = ("uniform", "normal", "log-uniform")
DESIGNS = ("sobol", "lhs")


@dataclass(frozen=True)
class Parameter:
    """One fit parameter.

    Args:
        name: A Python identifier, also used as the SQL column name.
        low, high: Finite bounds of the box, ``low < high``.
        scale: ``"linear"`` or ``"log"`` (needs ``low > 0``); the axis on which
            designs are space-filling and surrogates are trained.
        prior: ``{"uniform": {}}`` (default), ``{"normal": {"mean": m, "std": s}}``
            (truncated to the box) or ``{"log-uniform": {}}``.
    """

    name: str
    low: float
    high: float
    scale: str = "linear"
    prior: dict = field(default_factory=lambda: {"uniform": {}})

    @property
    def prior_kind(self) -> str:
        return next(iter(self.prior))

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "scale": self.scale, "prior": self.prior}


class ParameterSpace:
    """An ordered set of parameters with vectorized transforms and priors.

    Args:
        parameters: The parameters in their storage order.
    """

    def __init__(self, parameters: Sequence[Parameter]):
        self.parameters = tuple(parameters)
        self.names = tuple(p.name for p in self.parameters)
        self.low = np.array([p.low for p in self.parameters], dtype=float)
        self.high = np.array([p.high for p in self.parameters], dtype=float)
        self.is_log = np.array([p.scale == "log" for p in self.parameters], dtype=bool)
        # Bounds on the axis that the unit cube spans (log10 for log parameters),
        # computed once because every surrogate call transforms its rows.
        self._axis_low = np.where(self.is_log, np.log10(np.where(self.is_log, self.low, 1.0)), self.low)
        self._axis_high = np.where(self.is_log, np.log10(np.where(self.is_log, self.high, 1.0)), self.high)

    def __len__(self) -> int:
        return len(self.parameters)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParameterSpace) and self.to_dict() == other.to_dict()

    @property
    def dim(self) -> int:
        return len(self.parameters)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ParameterSpace":
        """Build and validate a space from the ``parameters`` mapping of a campaign file."""
        if not isinstance(data, Mapping) or not data:
            raise ConfigError(
                "parameters: expected a mapping of parameter names to "
                "{low, high, scale, prior}, got " + repr(data)
            )
        parameters = [_parse_parameter(name, spec) for name, spec in data.items()]
        _check_unique_names([p.name for p in parameters])
        return cls(parameters)

    def to_dict(self) -> dict:
        return {p.name: p.to_dict() for p in self.parameters}

    def diff(self, other: "ParameterSpace") -> list[str]:
        """List the differences to ``other`` as readable lines (empty when equal)."""
        mine, theirs = self.to_dict(), other.to_dict()
        lines = []
        for name in mine.keys() - theirs.keys():
            lines.append(f"- {name}: {mine[name]}")
        for name in theirs.keys() - mine.keys():
            lines.append(f"+ {name}: {theirs[name]}")
        for name in mine.keys() & theirs.keys():
            if mine[name] != theirs[name]:
                lines.append(f"~ {name}: {mine[name]} -> {theirs[name]}")
        if not lines and self.names != other.names:
            lines.append(f"~ order: {list(self.names)} -> {list(other.names)}")
        return sorted(lines)

    # Transforms between the box and the unit cube, shape (n, dim) -> (n, dim).

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Map physical values to the unit cube (log10 axis for log parameters)."""
        x = np.asarray(x, dtype=float)
        low, high = self._axis_bounds()
        axis = np.where(self.is_log, np.log10(np.where(self.is_log, x, 1.0)), x)
        return (axis - low) / (high - low)

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Map unit-cube coordinates to physical values."""
        u = np.asarray(u, dtype=float)
        low, high = self._axis_bounds()
        axis = low + u * (high - low)
        return np.where(self.is_log, 10.0 ** axis, axis)

    def _axis_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self._axis_low, self._axis_high

    def contains(self, x: np.ndarray) -> np.ndarray:
        """Return a boolean mask, shape (n,), of rows inside the box (bounds included)."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        return np.all((x >= self.low) & (x <= self.high), axis=1)

    def log_prior(self, x: np.ndarray) -> np.ndarray:
        """Evaluate the log prior density, up to a constant, for rows of ``x``.

        Args:
            x: Physical values, shape (n, dim).

        Returns:
            Array of shape (n,); ``-inf`` outside the box.
        """
        x = np.atleast_2d(np.asarray(x, dtype=float))
        total = np.zeros(len(x))
        for i, parameter in enumerate(self.parameters):
            kind = parameter.prior_kind
            if kind == "normal":
                spec = parameter.prior["normal"]
                total -= 0.5 * ((x[:, i] - spec["mean"]) / spec["std"]) ** 2
            elif kind == "log-uniform":
                with np.errstate(divide="ignore", invalid="ignore"):
                    total -= np.log(x[:, i])
        return np.where(self.contains(x), total, -np.inf)

    def design(self, n: int, method: str = "sobol", seed: int | None = None) -> np.ndarray:
        """Draw a space-filling design in the box.

        Args:
            n: Number of points.
            method: ``"sobol"`` (scrambled Sobol) or ``"lhs"`` (Latin hypercube).
            seed: Seed of the scrambling or permutation.

        Returns:
            Physical values, shape (n, dim).
        """
        from scipy.stats import qmc  # imported here to keep the CLI's start fast

        if n < 1:
            raise ConfigError(f"design size must be at least 1, got {n}")
        if method == "sobol":
            sampler = qmc.Sobol(d=self.dim, scramble=True, seed=seed)
            # Sobol points are balanced for powers of two; draw the next power
            # and keep the first n, which keeps the low discrepancy of a prefix.
            unit = sampler.random(2 ** math.ceil(math.log2(n)))[:n]
        elif method == "lhs":
            unit = qmc.LatinHypercube(d=self.dim, seed=seed).random(n)
        else:
            raise ConfigError(f"unknown design {method!r}; choose one of {', '.join(DESIGNS)}")
        return self.from_unit(unit)


def _parse_parameter(name: Any, spec: Any) -> Parameter:
    where = f"parameters.{name}"
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ConfigError(
            f"{where}: parameter names must be Python identifiers "
            f"(letters, digits and _, not starting with a digit), got {name!r}"
        )
    if name.lower() in RESERVED_NAMES:
        raise ConfigError(
            f"{where}: the name {name!r} clashes with a column of the points table; "
            f"rename the parameter (reserved: {', '.join(sorted(RESERVED_NAMES))})"
        )
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a mapping with low and high, got {spec!r}")
    unknown = set(spec) - {"low", "high", "scale", "prior"}
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
            "allowed keys are low, high, scale, prior"
        )
    low = _finite_number(spec.get("low"), f"{where}.low")
    high = _finite_number(spec.get("high"), f"{where}.high")
    if low >= high:
        raise ConfigError(f"{where}: low must be smaller than high, got low={low} and high={high}")

    scale = spec.get("scale", "linear")
    if scale not in SCALES:
        raise ConfigError(f"{where}.scale: expected one of {', '.join(SCALES)}, got {scale!r}")
    if scale == "log" and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0, got low={low}")

    prior = _parse_prior(spec.get("prior", "uniform"), where, low)
    return Parameter(name=name, low=low, high=high, scale=scale, prior=prior)


def _parse_prior(prior: Any, where: str, low: float) -> dict:
    if isinstance(prior, str):
        prior = {prior: {}}
    if not isinstance(prior, Mapping) or len(prior) != 1:
        raise ConfigError(
            f"{where}.prior: expected one of uniform, log-uniform or "
            f"{{normal: {{mean: M, std: S}}}}, got {prior!r}"
        )
    kind, args = next(iter(prior.items()))
    args = dict(args or {})
    if kind not in PRIOR_KINDS:
        raise ConfigError(f"{where}.prior: unknown prior {kind!r}; choose one of {', '.join(PRIOR_KINDS)}")
    if kind == "normal":
        if set(args) != {"mean", "std"}:
            raise ConfigError(f"{where}.prior.normal: expected exactly the keys mean and std, got {sorted(args)}")
        mean = _finite_number(args["mean"], f"{where}.prior.normal.mean")
        std = _finite_number(args["std"], f"{where}.prior.normal.std")
        if std <= 0:
            raise ConfigError(f"{where}.prior.normal.std: must be positive, got {std}")
        return {"normal": {"mean": mean, "std": std}}
    if args:
        raise ConfigError(f"{where}.prior.{kind}: takes no arguments, got {args}")
    if kind == "log-uniform" and low <= 0:
        raise ConfigError(f"{where}.prior: a log-uniform prior needs low > 0, got low={low}")
    return {kind: {}}


def _finite_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _check_unique_names(names: list[str]) -> None:
    seen: dict[str, str] = {}
    for name in names:
        if name.lower() in seen:
            raise ConfigError(
                f"parameters: {seen[name.lower()]!r} and {name!r} are the same name to SQL, "
                "which ignores case; rename one of them"
            )
        seen[name.lower()] = name
