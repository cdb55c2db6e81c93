"""Evaluating likelihoods: new points, the local pool, database workers and Dask.

Every executor claims points through :mod:`campaign.store.claims` and records
results through its :func:`~campaign.store.claims.record_results`, so the
claim, lease and late-result rules are the same for all three.
"""

from __future__ import annotations

import logging
import os

from campaign.errors import ConfigError
from campaign.evaluation.new_points import add_design, add_points_from_csv
from campaign.evaluation.pool import InlineExecutor, LocalPool
from campaign.evaluation.worker import EvaluationSummary, run_evaluations
from campaign.likelihood import check_likelihood
from campaign.trust import check_allowed

__all__ = [
    "add_design", "add_points_from_csv", "check_evaluable", "evaluate_pending", "run_worker", "EvaluationSummary",
    "EXECUTORS",
]

logger = logging.getLogger(__name__)

EXECUTORS = ("local", "dask")


def check_evaluable(fit) -> None:
    """Check that this machine may run the campaign's likelihood and that it loads.

    Commands that add points before evaluating them call this first, so a
    refusal leaves the database unchanged.

    Raises:
        ConfigError: The likelihood is not allowed here (``campaign allow``),
            cannot be loaded, or does not take the campaign's parameters.
    """
    check_allowed(fit.spec.likelihood, fit.name)
    check_likelihood(fit.spec.likelihood, fit.space.names)


def evaluate_pending(
    fit,
    *,
    workers: int | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    progress: bool = False,
) -> EvaluationSummary:
    """Evaluate every pending point of a campaign and wait for these evaluations.

    Points that other workers hold are not waited for. The local pool starts
    its processes with ``spawn``, which imports the calling script again, so a
    script that calls this function needs an ``if __name__ == "__main__":`` guard.

    Args:
        fit: An open :class:`campaign.api.Campaign`.
        workers: Local evaluation processes, or processes of the Dask
            ``LocalCluster``; defaults to the number of cores.
        executor: ``"local"`` (a pool of child processes) or ``"dask"``.
        scheduler: Address of a Dask scheduler; None starts a ``LocalCluster``.
        progress: Show a progress bar (evaluated, failed, rate, time left) on stderr.

    Raises:
        ConfigError: An invalid option, or a likelihood that cannot be loaded.
        KeyboardInterrupt: After finished results are recorded and unfinished
            claims are back to pending.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"invalid number of workers {workers!r}; give a positive integer")
    if scheduler is not None and executor != "dask":
        raise ConfigError("a scheduler address needs the dask executor (--executor dask)")
    ref, names = fit.spec.likelihood, fit.space.names
    check_evaluable(fit)

    if executor == "dask":
        from campaign.evaluation.dask_executor import DaskExecutor

        runner = DaskExecutor(ref, names, scheduler=scheduler, workers=workers)
    else:
        runner = LocalPool(ref, names, workers or os.cpu_count() or 1, executor="local")
    return run_evaluations(fit, runner, executor_name=executor, until_idle=True, progress=progress)


def run_worker(
    fit,
    *,
    max_points: int | None = None,
    idle_exit: float | None = None,
    poll_seconds: float = 1.0,
) -> EvaluationSummary:
    """Claim and evaluate pending points until stopped; the ``campaign worker`` command.

    The likelihood runs in this process, or in one child process when the
    campaign sets a timeout.

    Args:
        fit: An open :class:`campaign.api.Campaign`.
        max_points: Stop after claiming this many points; None has no limit.
        idle_exit: Stop after this many seconds without pending points; None
            keeps polling.
        poll_seconds: Interval between claims while no point is pending.
    """
    if max_points is not None and max_points < 1:
        raise ConfigError(f"invalid --max-points {max_points!r}; give a positive integer")
    if idle_exit is not None and idle_exit < 0:
        raise ConfigError(f"invalid --idle-exit {idle_exit!r}; give a number of seconds >= 0")
    if not poll_seconds > 0:
        raise ConfigError(f"invalid poll interval {poll_seconds!r}; give a positive number of seconds")
    ref, names = fit.spec.likelihood, fit.space.names
    check_evaluable(fit)

    runner = LocalPool(ref, names, 1, executor="worker") if ref.timeout else InlineExecutor(ref, names)
    return run_evaluations(
        fit, runner, executor_name="worker", until_idle=False,
        max_points=max_points, idle_exit=idle_exit, poll_seconds=poll_seconds,
    )
