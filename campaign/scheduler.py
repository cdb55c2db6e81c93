"""One active-learning step, and runs of steps.

A step runs these phases and records them in a row of table ``steps``.
It adds and evaluates the initial design while the campaign has fewer
points than ``settings.initial_points``. It trains the two-stage surrogate
on all evaluated points and registers it as a model version. Then it
proposes a batch with the campaign's acquisition strategy and evaluates it.

Each phase is committed before the next starts, and the step row records
the phase it reached. A step killed after its batch was stored (phase
``evaluate``) is finished by the next call, which evaluates the batch
instead of proposing again. A step killed earlier is marked
``interrupted``, and the next call starts a new step that evaluates any
pending points first. Randomness comes from generators seeded with the
campaign seed and the step number, so the same seed and the same evaluated
points give the same model versions and proposals.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import sqlalchemy as sa

from campaign.acquisition import propose_batch
from campaign.errors import ConflictError
from campaign.stepper_lock import StepperLock
from campaign.store import models
from campaign.store.campaigns import best_chi2, current_host
from campaign.store.points import insert_points, load_points
from campaign.surrogate.registry import load_model, register_model_version
from campaign.surrogate.training import cross_validate, prepare_training_set, train_surrogate
from campaign.surrogate.tuning import tune_hyperparameters

__all__ = ["StepReport", "run_step", "run_steps", "list_steps", "count_other_versions", "step_seed", "describe_convergence"]

logger = logging.getLogger(__name__)

#: The regressor has settled when its error on the newest batch's low
#: points is at most this multiple of its cross-validated error.
SETTLED_ERROR_FACTOR = 2.0
#: Boosting rounds added per step in ``retrain: continue`` mode, as a share of n_estimators.
CONTINUE_SHARE = 0.2
#: Seconds between checks while points of the step are still held by other workers.
RUNNING_POLL_SECONDS = 2.0

_PURPOSES = {"design": 0, "train": 1, "propose": 2}


@dataclass
class StepReport:
    """The outcome of one step.

    Attributes:
        number: Step number, 1, 2, ... per campaign.
        status: ``done`` (or ``failed``).
        resumed: The step was started by an earlier, interrupted call.
        timings: Seconds per phase.
        n_proposed, n_evaluated, n_failed: Points of the batch.
        model_version: Version number trained in this step.
        best_chi2: Lowest finite chi2 of the campaign after the step.
        convergence: The convergence criterion, see :func:`_convergence`.
    """

    number: int
    status: str = "running"
    resumed: bool = False
    timings: dict = field(default_factory=dict)
    n_proposed: int = 0
    n_evaluated: int = 0
    n_failed: int = 0
    model_version: int | None = None
    best_chi2: float | None = None
    convergence: dict = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return bool(self.convergence.get("converged"))


def step_seed(campaign_seed: int, number: int, purpose: str) -> int:
    """Derive the 32-bit seed of one purpose (design, train, propose) of one step."""
    return int(np.random.SeedSequence([campaign_seed, number, _PURPOSES[purpose]]).generate_state(1)[0])


def run_step(
    fit,
    *,
    workers: int | None = None,
    executor: str = "local",
    batch_size: int | None = None,
    echo: Callable[[str], None] | None = None,
    progress: bool = False,
) -> StepReport:
    """Run one active-learning step on a campaign, or finish an interrupted one.

    Args:
        fit: An open :class:`campaign.api.Campaign`.
        workers: Local evaluation processes; see :func:`campaign.evaluation.evaluate_pending`.
        executor: ``"local"`` or another executor of the evaluation engine.
        batch_size: Points to propose; ``settings.batch_size`` when None.
        echo: Called with one line per phase (the command line prints them).
        progress: Show a progress bar while evaluating.

    Raises:
        ConfigError: This machine may not run the likelihood, or it cannot
            be loaded. Nothing is written then.
        ConflictError: Another stepper has the campaign's lock, or no point
            has a finite chi2.
    """
    from campaign.evaluation import check_evaluable

    echo = echo or (lambda line: None)
    settings = fit.settings
    check_evaluable(fit)
    with StepperLock(fit.store, fit.id, fit.name, settings.lease_seconds) as lock:
        other_versions = count_other_versions(fit)
        if other_versions:
            found = ", ".join(f"{count} with version {version!r}" for version, count in sorted(other_versions.items()))
            logger.warning("campaign %s: ignoring points of other likelihood versions: %s", fit.name, found)
            echo(f"ignoring evaluated points of other likelihood versions: {found}")
        context = _StepContext(fit, lock, echo, workers, executor, progress)
        unfinished = _find_unfinished_step(fit)
        if unfinished is not None and unfinished.phase == "evaluate":
            echo(f"step {unfinished.number}: resuming an interrupted step in phase evaluate")
            return context.finish(unfinished.number, resumed=True)
        if unfinished is not None:
            _mark_interrupted(fit, unfinished)
            echo(f"step {unfinished.number}: interrupted in phase {unfinished.phase}; starting a new step")
        number = context.start()
        try:
            context.design(number)
            context.train(number)
            context.propose(number, batch_size or settings.batch_size)
        except ConflictError as exc:
            context.fail(number, exc)
            raise
        return context.finish(number, resumed=False)


def run_steps(
    fit,
    *,
    steps: int | None = None,
    until_converged: bool = False,
    max_evaluations: int | None = None,
    workers: int | None = None,
    executor: str = "local",
    echo: Callable[[str], None] | None = None,
    progress: bool = False,
) -> list[StepReport]:
    """Repeat :func:`run_step` until a limit is reached.

    Args:
        steps: Stop after this many steps.
        until_converged: Stop after the first step that meets the convergence criterion.
        max_evaluations: Stop when the campaign has this many evaluated
            (done or failed) points, the initial design included; the last
            batch is shortened to stay within the budget.

    At least one of the three limits must be given.
    """
    if steps is None and not until_converged and max_evaluations is None:
        raise ValueError("give steps, until_converged or max_evaluations, or the run would never stop")
    reports: list[StepReport] = []
    while steps is None or len(reports) < steps:
        batch_size = fit.settings.batch_size
        if max_evaluations is not None:
            remaining = max_evaluations - _evaluated_count(fit)
            if remaining <= 0:
                break
            batch_size = min(batch_size, remaining)
        report = run_step(fit, workers=workers, executor=executor, batch_size=batch_size, echo=echo, progress=progress)
        reports.append(report)
        if until_converged and report.converged:
            break
    return reports


def describe_convergence(convergence: dict, settings) -> str:
    """Describe a step's convergence: "converged", or which conditions it has met and which it has not."""
    if convergence.get("converged"):
        return "converged"
    quiet, patience = convergence.get("quiet_steps", 0), settings.convergence_patience
    parts = [f"{min(quiet, patience)}/{patience} quiet steps"]
    if quiet >= patience:
        parts[0] += " reached"
    parts.append("regressor settled" if convergence.get("settled") else "regressor not settled")
    batch_mae = convergence.get("batch_mae_low")
    if batch_mae is not None:
        parts.append(f"batch MAE {batch_mae:.3g} (limit {settings.convergence_mae:g})")
    return ", ".join(parts)


def count_other_versions(fit) -> dict[str, int]:
    """Count evaluated points of likelihood versions other than the campaign's.

    Training ignores those points (see :meth:`campaign.api.Campaign.arrays`),
    because a surrogate must not mix likelihood versions. They exist only
    after a forced ``campaign update`` of the likelihood version.
    """
    points = models.Point
    with fit.store.transaction() as session:
        rows = session.execute(
            sa.select(points.likelihood_version, sa.func.count())
            .where(
                points.campaign_id == fit.id,
                points.status == "done",
                points.likelihood_version != fit.spec.likelihood.version,
            )
            .group_by(points.likelihood_version)
        ).all()
    return dict(rows)


class _StepContext:
    """The phases of one step, sharing the campaign, the lock and the output."""

    def __init__(self, fit, lock: StepperLock, echo, workers, executor, progress):
        self.fit = fit
        self.settings = fit.settings
        self.lock = lock
        self.echo = echo
        self.workers = workers
        self.executor = executor
        self.progress = progress
        self.model_row_id: int | None = None

    def start(self) -> int:
        """Insert the step row and return its number."""
        with self.fit.store.transaction() as session:
            number = (session.scalar(
                sa.select(sa.func.max(models.Step.number)).where(models.Step.campaign_id == self.fit.id)
            ) or 0) + 1
            session.add(models.Step(
                campaign_id=self.fit.id, number=number, status="running", phase="design",
                strategy=self.settings.acquisition, host=current_host(), pid=os.getpid(),
                timings={}, acquisition={}, convergence={},
            ))
        logger.info("campaign %s: step %d started", self.fit.name, number)
        return number

    def design(self, number: int) -> None:
        """Add the initial design if the campaign is short of it, then evaluate pending points."""
        from campaign.evaluation import add_design

        start = time.perf_counter()
        missing = self._missing_design_points()
        if missing:
            add_design(self.fit, missing, self.settings.initial_design, origin="initial", step=number,
                       seed=step_seed(self.settings.seed, number, "design"))
            self.echo(f"step {number}: design {missing} points ({self.settings.initial_design})")
        self._update(number, phase="evaluate-pending")
        pending = self._count(("pending", "running"))
        if pending:
            self._evaluate(number, f"evaluate {pending} pending points", "evaluate_pending")
        self._record_timing(number, "design", time.perf_counter() - start)

    def train(self, number: int) -> None:
        """Train the surrogate on all evaluated points and register a model version."""
        self.lock.check()
        self._update(number, phase="train")
        start = time.perf_counter()
        settings = self.settings
        arrays = self.fit.arrays()
        delta_chi2 = settings.low_region_width(self.fit.space.dim)
        training = prepare_training_set(self.fit.space, arrays.x, arrays.chi2, delta_chi2)
        seed = step_seed(settings.seed, number, "train")

        parent_row, parent_model = self._latest_model()
        tuned_n = parent_row.hyperparameters.get("tuned_n_train", 0) if parent_row else 0
        if parent_row is None or len(arrays) >= settings.retune_factor * tuned_n:
            mode = "tune"
            hyperparameters = tune_hyperparameters(training, iterations=settings.tuning_iterations, seed=seed,
                                                   threads=settings.threads)
            tuned_n = len(arrays)
        else:
            mode = settings.retrain
            hyperparameters = {role: parent_row.hyperparameters[role] for role in ("classifier", "regressor")}

        # NOTE: in continue mode the metrics and the low threshold come from refits on the folds,
        # not from the continued boosters, whose log-odds may be scaled differently.
        metrics = cross_validate(training, hyperparameters, seed=seed, threads=settings.threads,
                                 low_recall=settings.low_recall)

        continue_from = parent_model if mode == "continue" else None
        rounds = max(10, int(CONTINUE_SHARE * hyperparameters["regressor"]["n_estimators"])) if continue_from else None
        committee = settings.committee_size if settings.acquisition == "committee" else 0
        model, seconds = train_surrogate(self.fit.space, training, hyperparameters, seed=seed, threads=settings.threads,
                                         committee_size=committee, parent=continue_from, continue_rounds=rounds,
                                         low_margin_threshold=metrics["low_margin_threshold"])

        with self.fit.store.transaction() as session:
            row = register_model_version(
                session, self.fit.id, model,
                hyperparameters={**hyperparameters, "tuned_n_train": tuned_n, "committee_size": committee},
                metrics=metrics, n_train=len(arrays), n_low=training.n_low, last_point_id=int(arrays.ids.max()),
                parent_id=parent_row.id if parent_row else None, training_mode=mode, training_seconds=seconds,
            )
            self._update(number, session=session, phase="propose", model_version_id=row.id)
            version = row.version
        self.model_row_id = row.id
        elapsed = time.perf_counter() - start
        self._record_timing(number, "train", elapsed)
        self.echo(f"step {number}: train model v{version} ({mode}, {len(arrays)} points, {training.n_low} low) "
                  f"{elapsed:.1f} s; CV {_metrics_text(metrics)}")

    def propose(self, number: int, batch_size: int) -> None:
        """Propose a batch and store it with the step, in one transaction."""
        self.lock.check()
        start = time.perf_counter()
        settings = self.settings
        with self.fit.store.transaction() as session:
            _, model = load_model(session, self.fit.id, self.fit.space)
        arrays = self.fit.arrays()
        rng = np.random.default_rng(step_seed(settings.seed, number, "propose"))
        batch = propose_batch(
            self.fit.space, model, arrays.x, arrays.chi2, strategy=settings.acquisition, batch_size=batch_size,
            exploration_fraction=settings.exploration_fraction, n_candidates=settings.n_candidates, rng=rng,
            threads=settings.threads,
        )
        with self.fit.store.transaction() as session:
            campaign = session.get(models.Campaign, self.fit.id)
            for origin in ("acquisition", "exploration"):
                rows = np.array([o == origin for o in batch.origins])
                if rows.any():
                    insert_points(session, campaign, batch.x[rows], origin, step=number)
            self._update(number, session=session, phase="evaluate", n_proposed=len(batch.x),
                         acquisition=batch.statistics)
        elapsed = time.perf_counter() - start
        self._record_timing(number, "propose", elapsed)
        stats = batch.statistics
        self.echo(f"step {number}: propose {len(batch.x)} points ({settings.acquisition}: "
                  f"{stats['n_acquisition']} acquisition, {stats['n_exploration']} exploration) {elapsed:.1f} s")

    def finish(self, number: int, *, resumed: bool) -> StepReport:
        """Evaluate the step's batch, compute the convergence criterion and close the step."""
        self.lock.check()
        if self._count(("pending", "running")):
            self._evaluate(number, "evaluate batch", "evaluate")
        with self.fit.store.transaction() as session:
            step = self._step_row(session, number)
            counts = dict(session.execute(
                sa.select(models.Point.status, sa.func.count())
                .where(models.Point.campaign_id == self.fit.id, models.Point.step == number,
                       models.Point.origin.in_(["acquisition", "exploration"]))
                .group_by(models.Point.status)
            ).all())
            best = best_chi2(session, self.fit.id, self.fit.spec.likelihood.version)
            step.n_evaluated = counts.get("done", 0)
            step.n_failed = counts.get("failed", 0)
            convergence = self._convergence(session, step, best)
            step.status = "done"
            step.phase = None
            step.best_chi2 = best
            step.convergence = convergence
            step.finished_at = datetime.now(timezone.utc)
            version = session.get(models.ModelVersion, step.model_version_id).version if step.model_version_id else None
            report = StepReport(number=number, status="done", resumed=resumed, timings=dict(step.timings),
                                n_proposed=step.n_proposed, n_evaluated=step.n_evaluated, n_failed=step.n_failed,
                                model_version=version, best_chi2=best, convergence=convergence)
        logger.info("campaign %s: step %d done, best chi2 %s", self.fit.name, number, best)
        described = describe_convergence(convergence, self.settings)
        state = described if convergence["converged"] else f"not converged ({described})"
        self.echo(f"step {number}: done, best chi2 {_number(best)}, {report.n_evaluated} evaluated, "
                  f"{report.n_failed} failed; {state}")
        return report

    def fail(self, number: int, error: Exception) -> None:
        """Mark the step failed, keeping the phase where it stopped and the message."""
        with self.fit.store.transaction() as session:
            step = self._step_row(session, number)
            step.status = "failed"
            step.acquisition = {**step.acquisition, "error": str(error)}
            step.finished_at = datetime.now(timezone.utc)
        logger.error("campaign %s: step %d failed in phase %s: %s", self.fit.name, number, step.phase, error)

    # Helpers.

    def _evaluate(self, number: int, label: str, timing_key: str) -> None:
        """Evaluate pending points until none of the campaign's points is pending or running."""
        from campaign.evaluation import evaluate_pending

        start = time.perf_counter()
        before = self._evaluated_ids()
        while True:
            evaluate_pending(self.fit, workers=self.workers, executor=self.executor, progress=self.progress)
            self.lock.check()
            running = self._count(("pending", "running"))
            if not running:
                break
            # Points claimed by other workers, or by a worker that died and
            # whose lease has not run out yet; their results are needed.
            logger.info("campaign %s: step %d waits for %d points held by other workers", self.fit.name, number, running)
            time.sleep(RUNNING_POLL_SECONDS)
        elapsed = time.perf_counter() - start
        self._record_timing(number, timing_key, elapsed)
        new = self._evaluated_ids() - before
        with self.fit.store.transaction() as session:
            failed = session.scalar(sa.select(sa.func.count()).where(
                models.Point.id.in_(list(new)), models.Point.status == "failed")) if new else 0
        self.echo(f"step {number}: {label}: {len(new) - failed} done, {failed} failed in {elapsed:.1f} s")

    def _evaluated_ids(self) -> set[int]:
        with self.fit.store.transaction() as session:
            return set(session.scalars(sa.select(models.Point.id).where(
                models.Point.campaign_id == self.fit.id, models.Point.status.in_(["done", "failed"]))))

    def _missing_design_points(self) -> int:
        """Count the design points still needed, ignoring points of older likelihood versions.

        Pending and running points count whatever version they were added
        with, because the current likelihood evaluates them.
        """
        points = models.Point
        current = (points.likelihood_version == self.fit.spec.likelihood.version) | points.status.in_(
            ("pending", "running"))
        with self.fit.store.transaction() as session:
            initial = session.scalar(sa.select(sa.func.count()).where(
                points.campaign_id == self.fit.id, points.origin == "initial", current))
            usable = session.scalar(sa.select(sa.func.count()).where(
                points.campaign_id == self.fit.id, points.status != "failed", current))
        if initial:
            return 0
        return max(0, self.settings.initial_points - usable)

    def _count(self, statuses: tuple[str, ...]) -> int:
        with self.fit.store.transaction() as session:
            return session.scalar(sa.select(sa.func.count()).where(
                models.Point.campaign_id == self.fit.id, models.Point.status.in_(statuses)))

    def _latest_model(self):
        with self.fit.store.transaction() as session:
            has_model = session.scalar(sa.select(sa.func.count()).where(models.ModelVersion.campaign_id == self.fit.id))
            if not has_model:
                return None, None
            return load_model(session, self.fit.id, self.fit.space)

    def _step_row(self, session, number: int) -> models.Step:
        return session.scalars(sa.select(models.Step).where(
            models.Step.campaign_id == self.fit.id, models.Step.number == number)).one()

    def _update(self, number: int, *, session=None, **values) -> None:
        if session is None:
            with self.fit.store.transaction() as own_session:
                self._update(number, session=own_session, **values)
            return
        step = self._step_row(session, number)
        for key, value in values.items():
            setattr(step, key, value)

    def _record_timing(self, number: int, phase: str, seconds: float) -> None:
        with self.fit.store.transaction() as session:
            step = self._step_row(session, number)
            step.timings = {**step.timings, phase: round(seconds, 3)}

    def _convergence(self, session, step: models.Step, best: float | None) -> dict:
        """Compute the convergence criterion of a finished step.

        A step is quiet when it evaluated points and lowered the best chi2 by
        less than ``convergence_tolerance``. The regressor has settled when its mean
        absolute error on the batch's points inside the low region is at
        most :data:`SETTLED_ERROR_FACTOR` times its cross-validated error, and
        it is accurate when that batch error is at most ``convergence_mae``.
        The campaign has converged after ``convergence_patience`` quiet steps
        in a row with a settled and accurate regressor.
        """
        settings = self.settings
        previous = session.scalars(sa.select(models.Step).where(
            models.Step.campaign_id == self.fit.id, models.Step.number < step.number, models.Step.status == "done",
        ).order_by(models.Step.number.desc()).limit(1)).first()
        previous_best = previous.best_chi2 if previous else None
        if best is None or previous_best is None or not math.isfinite(previous_best):
            improvement = None
        else:
            improvement = previous_best - best
        # A step whose batch all failed learned nothing, so it is no evidence of convergence.
        quiet = improvement is not None and improvement < settings.convergence_tolerance and step.n_evaluated > 0
        quiet_steps = 0
        if quiet:
            quiet_steps = 1 + (previous.convergence.get("quiet_steps", 0) if previous else 0)

        batch_mae, n_batch_low, cv_mae = self._batch_error(session, step, best)
        settled = batch_mae is not None and cv_mae is not None and batch_mae <= SETTLED_ERROR_FACTOR * cv_mae
        accurate = batch_mae is not None and batch_mae <= settings.convergence_mae
        return {
            "improvement": improvement, "quiet_steps": quiet_steps, "batch_mae_low": batch_mae,
            "n_batch_low": n_batch_low, "cv_mae_low": cv_mae, "settled": settled, "accurate": accurate,
            "converged": bool(settled and accurate and quiet_steps >= settings.convergence_patience),
        }

    def _batch_error(self, session, step: models.Step, best: float | None) -> tuple[float | None, int, float | None]:
        """Return the step model's mean absolute error on the batch's low points, their count, and the CV error."""
        if step.model_version_id is None or best is None:
            return None, 0, None
        row, model = load_model(session, self.fit.id, self.fit.space,
                                session.get(models.ModelVersion, step.model_version_id).version)
        batch = load_points(session, self.fit.id, self.fit.space.dim)
        in_step = set(session.scalars(sa.select(models.Point.id).where(
            models.Point.step == step.number, models.Point.campaign_id == self.fit.id,
            models.Point.origin.in_(["acquisition", "exploration"]))))
        mask = np.array([i in in_step for i in batch.ids], dtype=bool)
        with np.errstate(invalid="ignore"):
            mask &= np.isfinite(batch.chi2) & (batch.chi2 < best + row.delta_chi2)
        cv_mae = row.metrics.get("regressor_mae_low")
        if not mask.any():
            return None, 0, cv_mae
        error = np.abs(model.predict_chi2(batch.x[mask]) - batch.chi2[mask])
        return float(error.mean()), int(mask.sum()), cv_mae


def _find_unfinished_step(fit) -> models.Step | None:
    with fit.store.transaction() as session:
        return session.scalars(sa.select(models.Step).where(
            models.Step.campaign_id == fit.id, models.Step.status == "running",
        ).order_by(models.Step.number.desc()).limit(1)).first()


def _mark_interrupted(fit, step: models.Step) -> None:
    with fit.store.transaction() as session:
        row = session.get(models.Step, step.id)
        row.status = "interrupted"
        row.finished_at = datetime.now(timezone.utc)
    logger.warning("campaign %s: step %d was interrupted in phase %s", fit.name, step.number, step.phase)


def _evaluated_count(fit) -> int:
    counts = fit.status_counts()
    return counts["done"] + counts["failed"]


def _metrics_text(metrics: dict) -> str:
    return (f"MAE {_number(metrics.get('regressor_mae_low'))}, RMSE {_number(metrics.get('regressor_rmse_low'))}, "
            f"accuracy {_number(metrics.get('classifier_accuracy'))}, AUC {_number(metrics.get('classifier_auc'))}, "
            f"low at log-odds > {_number(metrics.get('low_margin_threshold'))} "
            f"(recall {_number(metrics.get('classifier_recall_low'))})")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"



def list_steps(fit) -> list[dict]:
    """Summarize a campaign's steps, oldest first, for ``campaign show``.

    Each row has number, status (``running`` for a half-finished step, with
    the phase it reached), model version, point counts, best chi2, total
    seconds of the recorded phases, and the convergence criterion.
    """
    with fit.store.transaction() as session:
        rows = session.execute(
            sa.select(models.Step, models.ModelVersion.version)
            .outerjoin(models.ModelVersion, models.ModelVersion.id == models.Step.model_version_id)
            .where(models.Step.campaign_id == fit.id)
            .order_by(models.Step.number)
        ).all()
        return [
            {
                "number": step.number, "status": step.status, "phase": step.phase, "model_version": version,
                "strategy": step.strategy, "n_proposed": step.n_proposed, "n_evaluated": step.n_evaluated,
                "n_failed": step.n_failed, "best_chi2": step.best_chi2, "timings": dict(step.timings),
                "seconds": sum(v for k, v in step.timings.items() if k != "evaluate_pending"),
                "convergence": dict(step.convergence), "started_at": step.started_at, "finished_at": step.finished_at,
            }
            for step, version in rows
        ]
