"""Campaign definitions: the YAML campaign file, its settings and validation.

A :class:`CampaignSpec` is everything needed to create a campaign. It is
validated completely before anything touches the database, so a bad file
changes nothing.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from campaign.errors import ConfigError
from campaign.space import DESIGNS, ParameterSpace

__all__ = ["CampaignSpec", "LikelihoodRef", "Settings", "load_campaign_file", "parse_campaign"]

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
RETURNS = ("chi2", "loglike")
ACQUISITIONS = ("committee", "gp", "random")
RETRAIN_MODES = ("continue", "refit")


@dataclass(frozen=True)
class LikelihoodRef:
    """Reference to a likelihood, with how to read and version its result.

    Exactly one of ``python`` (``"package.module:function"`` or
    ``"path/to/file.py:function"``) and ``command`` (an argument list that reads
    a JSON object on stdin and writes JSON on stdout) is set.
    """

    python: str | None = None
    command: tuple[str, ...] | None = None
    returns: str = "chi2"
    version: str = "1"
    timeout: float | None = None

    def to_dict(self) -> dict:
        data = {"returns": self.returns, "version": self.version, "timeout": self.timeout}
        if self.python is not None:
            data["python"] = self.python
        else:
            data["command"] = list(self.command)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LikelihoodRef":
        return _parse_likelihood(data)

    def describe(self) -> str:
        return self.python if self.python is not None else " ".join(self.command)


@dataclass(frozen=True)
class Settings:
    """Per-campaign settings; every field has a default.

    Attributes:
        seed: Root seed of designs, surrogates, acquisition and evaluations.
        initial_points: Size of the initial space-filling design.
        initial_design: ``"sobol"`` or ``"lhs"``.
        batch_size: Points proposed per active-learning step.
        delta_chi2: Width of the low region above the best chi2. ``None``
            means the chi2 quantile at ``confidence`` for the campaign's dimension.
        confidence: Confidence level behind the default ``delta_chi2``.
        acquisition: ``"committee"``, ``"gp"`` or ``"random"`` (space-filling only).
        exploration_fraction: Share of each batch drawn space-filling.
        committee_size: Boosted regressors in the committee strategy.
        n_candidates: Candidate points scored per step.
        retune_factor: Re-tune hyperparameters when the training set has grown
            by this factor since the last tuning.
        tuning_iterations: Bayesian-optimisation iterations per tuning.
        retrain: ``"continue"`` from the previous booster or ``"refit"``.
        max_attempts: Evaluations of one point before it is marked failed.
        lease_seconds: Lease of a claimed point; workers renew it while running.
        convergence_tolerance: Improvement of the best chi2 below which a step
            counts as not improving.
        convergence_patience: Consecutive non-improving steps for convergence.
        convergence_mae: Largest mean absolute chi2 error of the regressor on
            the newest batch's low-region points for convergence. An error
            near 1 already shifts 68% intervals, whose delta chi2 is 1.
        low_recall: Target share of the low region's points that the
            classifier classifies low, on held-out cross-validation folds.
            Training lowers the classifier's log-odds threshold below 0
            (probability 0.5) until this share is reached. The surrogate's
            low region and its posterior gate then lose less of the region's
            edge, at the cost of classifying some points outside it as low.
        threads: Threads used by XGBoost and scikit-learn (fixed for reproducibility).
    """

    seed: int = 0
    initial_points: int = 128
    initial_design: str = "sobol"
    batch_size: int = 32
    delta_chi2: float | None = None
    confidence: float = 0.999
    acquisition: str = "committee"
    exploration_fraction: float = 0.1
    committee_size: int = 5
    n_candidates: int = 4096
    retune_factor: float = 2.0
    tuning_iterations: int = 8
    retrain: str = "refit"
    max_attempts: int = 3
    lease_seconds: float = 120.0
    convergence_tolerance: float = 0.1
    convergence_patience: int = 3
    convergence_mae: float = 1.0
    low_recall: float = 0.97
    threads: int = 1

    def low_region_width(self, dim: int) -> float:
        """Return delta_chi2, derived from ``confidence`` and ``dim`` when unset."""
        if self.delta_chi2 is not None:
            return self.delta_chi2
        from scipy.stats import chi2 as chi2_distribution  # imported here to keep the CLI's start fast

        return float(chi2_distribution.ppf(self.confidence, dim))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Settings":
        return _parse_settings(data or {})


@dataclass(frozen=True)
class CampaignSpec:
    """A validated campaign definition."""

    name: str
    space: ParameterSpace
    likelihood: LikelihoodRef
    description: str = ""
    settings: Settings = field(default_factory=Settings)


def load_campaign_file(path: str | Path) -> CampaignSpec:
    """Read and validate a YAML campaign file.

    Raises:
        ConfigError: The file is missing, is not valid YAML, or fails validation.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read campaign file {str(path)!r}: {exc.strerror}") from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    return parse_campaign(data)


def parse_campaign(data: Any) -> CampaignSpec:
    """Validate a campaign definition given as a mapping (the parsed YAML)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a campaign file must be a mapping with name, parameters and likelihood, got {data!r}")
    _reject_unknown(data, {"name", "description", "parameters", "likelihood", "settings"}, "campaign file")
    for key in ("name", "parameters", "likelihood"):
        if key not in data:
            raise ConfigError(f"campaign file: missing required key {key!r}")

    space = ParameterSpace.from_dict(data["parameters"])
    return CampaignSpec(
        name=validate_name(data["name"]),
        description=_string(data.get("description", ""), "description"),
        space=space,
        likelihood=_parse_likelihood(data["likelihood"]),
        settings=_parse_settings(data.get("settings") or {}),
    )


def validate_name(name: Any) -> str:
    """Check a campaign name: a letter, then letters, digits, ``_``, ``.`` or ``-``."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(
            f"name: invalid campaign name {name!r}; use 1 to 100 letters, digits, "
            "'_', '.' or '-', starting with a letter"
        )
    return name


def _parse_likelihood(data: Any) -> LikelihoodRef:
    if not isinstance(data, Mapping):
        raise ConfigError(f"likelihood: expected a mapping with python or command, got {data!r}")
    _reject_unknown(data, {"python", "command", "returns", "version", "timeout"}, "likelihood")
    if ("python" in data) == ("command" in data):
        raise ConfigError("likelihood: set exactly one of python (module:function) and command (argument list)")

    python = command = None
    if "python" in data:
        python = data["python"]
        if not isinstance(python, str) or ":" not in python or python.endswith(":"):
            raise ConfigError(
                f"likelihood.python: expected 'package.module:function' or "
                f"'path/to/file.py:function', got {python!r}"
            )
    else:
        command = data["command"]
        if isinstance(command, str):
            command = command.split()
        if not command or not all(isinstance(arg, str) for arg in command):
            raise ConfigError(f"likelihood.command: expected a non-empty list of strings, got {data['command']!r}")
        command = tuple(command)

    returns = data.get("returns", "chi2")
    if returns not in RETURNS:
        raise ConfigError(f"likelihood.returns: expected chi2 or loglike, got {returns!r}")
    version = data.get("version", "1")
    if isinstance(version, (int, float)) and not isinstance(version, bool):
        version = str(version)
    version = _string(version, "likelihood.version")
    if not version:
        raise ConfigError("likelihood.version: must not be empty")
    timeout = data.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0 or not math.isfinite(timeout):
            raise ConfigError(f"likelihood.timeout: expected a positive number of seconds, got {timeout!r}")
        timeout = float(timeout)
    return LikelihoodRef(python=python, command=command, returns=returns, version=version, timeout=timeout)


_SETTING_CHECKS: dict[str, tuple[type, Any]] = {
    "seed": (int, lambda v: v >= 0),
    "initial_points": (int, lambda v: v >= 1),
    "initial_design": (str, lambda v: v in DESIGNS),
    "batch_size": (int, lambda v: v >= 1),
    "delta_chi2": (float, lambda v: v is None or (math.isfinite(v) and v > 0)),
    "confidence": (float, lambda v: 0 < v < 1),
    "acquisition": (str, lambda v: v in ACQUISITIONS),
    "exploration_fraction": (float, lambda v: 0 <= v <= 1),
    "committee_size": (int, lambda v: v >= 2),
    "n_candidates": (int, lambda v: v >= 16),
    "retune_factor": (float, lambda v: v > 1),
    "tuning_iterations": (int, lambda v: v >= 1),
    "retrain": (str, lambda v: v in RETRAIN_MODES),
    "max_attempts": (int, lambda v: v >= 1),
    "lease_seconds": (float, lambda v: v > 0),
    "convergence_tolerance": (float, lambda v: v >= 0),
    "convergence_patience": (int, lambda v: v >= 1),
    "convergence_mae": (float, lambda v: v > 0),
    "low_recall": (float, lambda v: 0 < v <= 1),
    "threads": (int, lambda v: v >= 1),
}

_ALLOWED_VALUES = {
    "initial_design": ", ".join(DESIGNS),
    "acquisition": ", ".join(ACQUISITIONS),
    "retrain": ", ".join(RETRAIN_MODES),
    "confidence": "a number between 0 and 1",
    "exploration_fraction": "a number between 0 and 1",
    "delta_chi2": "a positive number, or null for the default",
    "committee_size": "an integer of at least 2",
    "n_candidates": "an integer of at least 16",
    "retune_factor": "a number greater than 1",
    "low_recall": "a share greater than 0 and at most 1, e.g. 0.97",
}


def _parse_settings(data: Mapping[str, Any]) -> Settings:
    if not isinstance(data, Mapping):
        raise ConfigError(f"settings: expected a mapping, got {data!r}")
    _reject_unknown(data, set(_SETTING_CHECKS), "settings")
    values = {}
    for key, value in data.items():
        kind, check = _SETTING_CHECKS[key]
        values[key] = _coerce_setting(key, value, kind, check)
    return Settings(**values)


def _coerce_setting(key: str, value: Any, kind: type, check) -> Any:
    allowed = _ALLOWED_VALUES.get(key, "a non-negative integer" if kind is int else f"a valid {kind.__name__}")
    if value is None and key == "delta_chi2":
        return None
    ok_type = not isinstance(value, bool) and (
        isinstance(value, kind) or (kind is float and isinstance(value, int))
    )
    if not ok_type or not check(value):
        raise ConfigError(f"settings.{key}: invalid value {value!r}; expected {allowed}")
    return float(value) if kind is float else value


def _reject_unknown(data: Mapping, allowed: set[str], where: str) -> None:
    unknown = set(map(str, data)) - allowed
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"allowed keys are {', '.join(sorted(allowed))}"
        )


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that rejects duplicate keys, which PyYAML otherwise drops silently."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}; each name may appear once")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)
