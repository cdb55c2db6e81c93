"""The allow-list of likelihoods this machine runs.

A campaign stores only a reference to its likelihood: a module path, a file
path or a command. Anyone who can write to a shared database could store a
reference to arbitrary code, so a worker runs a reference only when this
machine allows it:

- the machine stored it itself (``campaign create`` and ``campaign update``
  allow what they store),
- a user allowed it with ``campaign allow NAME`` after inspecting it, or
- an installed package provides it through the entry-point group
  ``campaign.likelihoods`` (each entry's value is a ``"module:function"``).

The allow-list is a JSON file in ``$CAMPAIGN_CONFIG_DIR``, by default
``~/.config/campaign``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

from campaign.config import LikelihoodRef
from campaign.errors import ConfigError

__all__ = ["CONFIG_ENV", "ENTRY_POINT_GROUP", "allow_list_path", "reference_key", "is_allowed", "allow", "check_allowed"]

logger = logging.getLogger(__name__)

CONFIG_ENV = "CAMPAIGN_CONFIG_DIR"
ENTRY_POINT_GROUP = "campaign.likelihoods"


def allow_list_path() -> Path:
    """Return the allow-list file: ``$CAMPAIGN_CONFIG_DIR/allowed-likelihoods.json``."""
    root = os.environ.get(CONFIG_ENV) or Path.home() / ".config" / "campaign"
    return Path(root) / "allowed-likelihoods.json"


def reference_key(ref: LikelihoodRef) -> str:
    """Return the allow-list key of a reference: what it runs on this machine.

    File paths are made absolute, so allowing ``model.py:chi2`` in one
    directory does not allow a file of the same name elsewhere.
    """
    if ref.command is not None:
        return "command:" + json.dumps(list(ref.command))
    target, _, function = ref.python.rpartition(":")
    if target.endswith(".py") or "/" in target or os.sep in target:
        target = str(Path(target).resolve())
    return f"python:{target}:{function}"


def _stored_keys(path: Path) -> set[str]:
    try:
        return set(json.loads(path.read_text()))
    except FileNotFoundError:
        return set()
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read the likelihood allow-list {path}: {exc}; fix or delete the file") from exc


def _allowed_keys() -> set[str]:
    keys = _stored_keys(allow_list_path())
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        keys.add(f"python:{entry.value}")
    return keys


def is_allowed(ref: LikelihoodRef) -> bool:
    """Tell whether this machine runs ``ref``."""
    return reference_key(ref) in _allowed_keys()


def allow(ref: LikelihoodRef) -> bool:
    """Add ``ref`` to this machine's allow-list; return False when it was allowed already."""
    key = reference_key(ref)
    path = allow_list_path()
    stored = _stored_keys(path)
    if key in stored:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write a new file and rename it, so a concurrent reader never sees half a list.
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        json.dump(sorted(stored | {key}), handle, indent=1)
    os.replace(handle.name, path)
    logger.info("allowed likelihood %s in %s", key, path)
    return True


def check_allowed(ref: LikelihoodRef, campaign_name: str) -> None:
    """Raise unless this machine runs ``ref``.

    Raises:
        ConfigError: The reference is not allowed. The message contains the command that allows it.
    """
    if is_allowed(ref):
        return
    raise ConfigError(
        f"campaign {campaign_name!r} runs the likelihood {reference_key(ref)}, which this machine "
        f"has not allowed. A shared database can name any code, so inspect it first, then run "
        f"`campaign allow {campaign_name}` (allow-list: {allow_list_path()})"
    )
