"""One evaluation of the likelihood, in this process or in a child process.

:func:`evaluate_claim` turns a claimed point into a :class:`Result`, catching
every exception of the likelihood. :class:`ChildEvaluator` keeps one child
process that loads the likelihood once and evaluates claims sent to it over
a pipe, so that a crash, a hang or global state of a physics code stays in
that child.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import time
import traceback
from datetime import datetime, timezone
from multiprocessing.connection import Connection

from campaign.config import LikelihoodRef
from campaign.errors import LikelihoodError
from campaign.likelihood import Likelihood
from campaign.store.campaigns import current_host, current_user
from campaign.store.claims import Claim, Result

__all__ = ["evaluate_claim", "ChildEvaluator", "evaluation_context", "ERROR_LIMIT"]

logger = logging.getLogger(__name__)

#: Characters of an error message stored on a point.
ERROR_LIMIT = 4000
#: Innermost stack frames kept in a stored traceback.
TRACEBACK_FRAMES = 5
#: Seconds a child gets to exit after its pipe closes, before it is killed.
CHILD_EXIT_SECONDS = 2.0
_PR_SET_PDEATHSIG = 1


def evaluation_context() -> multiprocessing.context.BaseContext:
    """Return the start method for evaluation processes.

    ``fork`` would copy the threads of XGBoost and of database drivers into
    the child in whatever state they are, so children are started with
    ``spawn``.
    """
    return multiprocessing.get_context("spawn")


def evaluate_claim(likelihood: Likelihood, claim: Claim, executor: str) -> Result:
    """Evaluate the likelihood at a claimed point and describe the outcome.

    Exceptions of the likelihood become ``failed`` results carrying the
    exception type, message and the innermost frames of the traceback.
    ``KeyboardInterrupt`` and ``SystemExit`` propagate.
    """
    started_at = datetime.now(timezone.utc)
    start = time.perf_counter()
    chi2 = outputs = error = None
    try:
        chi2, outputs = likelihood(claim.params, seed=claim.seed)
        status = "done"
    except LikelihoodError as exc:
        status, error = "failed", f"LikelihoodError: {exc}"
    except Exception as exc:
        status, error = "failed", describe_exception(exc)
    seconds = time.perf_counter() - start

    if error is not None:
        logger.warning("point %d: likelihood failed: %s", claim.point_id, error.splitlines()[0])
    return Result(
        point_id=claim.point_id,
        status=status,
        chi2=chi2,
        outputs=outputs or None,
        error=error,
        executor=executor,
        host=current_host(),
        pid=os.getpid(),
        user=current_user(),
        started_at=started_at,
        finished_at=datetime.now(timezone.utc),
        eval_seconds=seconds,
    )


def describe_exception(exc: BaseException) -> str:
    """Format an exception as type, message and its innermost stack frames."""
    frames = traceback.format_tb(exc.__traceback__)[-TRACEBACK_FRAMES:]
    text = f"{type(exc).__name__}: {exc}\nTraceback (innermost {len(frames)} frames):\n" + "".join(frames)
    return shorten(text)


def shorten(text: str, limit: int = ERROR_LIMIT) -> str:
    """Cut ``text`` to ``limit`` characters, keeping its start and its end."""
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return text[:half] + "\n...\n" + text[-half:]


class ChildEvaluator:
    """A child process that evaluates one claim at a time.

    The child is started on the first :meth:`submit` and again after it was
    killed or died.

    Args:
        ref: The campaign's likelihood reference.
        names: Parameter names, in storage order.
        executor: Recorded on results (``"local"`` or ``"worker"``).
    """

    def __init__(self, ref: LikelihoodRef, names: tuple[str, ...], executor: str):
        self.ref = ref
        self.names = names
        self.executor = executor
        self.claim: Claim | None = None
        self.deadline: float | None = None
        self.process: multiprocessing.process.BaseProcess | None = None
        self.connection: Connection | None = None

    def start(self) -> None:
        """Start the child process if it is not running."""
        if self.process is not None and self.process.is_alive():
            return
        parent_end, child_end = evaluation_context().Pipe()
        self.process = evaluation_context().Process(
            target=_child_main, args=(child_end, self.ref, self.names, self.executor),
            name="campaign-evaluator", daemon=True,
        )
        self.process.start()
        child_end.close()
        self.connection = parent_end
        logger.debug("started evaluation process %d", self.process.pid)

    @property
    def busy(self) -> bool:
        return self.claim is not None

    def submit(self, claim: Claim) -> None:
        """Send a claim to the child; the deadline starts now when the likelihood has a timeout."""
        self.start()
        self.connection.send(claim)
        self.claim = claim
        self.deadline = time.monotonic() + self.ref.timeout if self.ref.timeout else None

    def receive(self) -> Result:
        """Read the result of the current claim; call when the pipe is readable or the child died.

        A dead child yields a ``crashed`` result with its exit status.
        """
        claim = self.claim
        try:
            result = self.connection.recv()
        except (EOFError, OSError):
            self.process.join(CHILD_EXIT_SECONDS)
            code = self.process.exitcode
            self.stop()
            self.claim = None
            logger.error("point %d: evaluation process died with exit status %s", claim.point_id, code)
            return crashed_result(claim, self.executor, f"evaluation process exited with status {code} (crashed)")
        self.claim = None
        return result

    def time_out(self) -> Result:
        """Kill the child after the deadline passed and return a ``failed`` result."""
        claim = self.claim
        self.stop()
        self.claim = None
        logger.warning("point %d: timed out after %g s", claim.point_id, self.ref.timeout)
        return Result(
            point_id=claim.point_id, status="failed", error=f"timed out after {self.ref.timeout:g} s",
            executor=self.executor, host=current_host(), pid=None, user=current_user(),
            finished_at=datetime.now(timezone.utc), eval_seconds=self.ref.timeout,
        )

    def stop(self) -> None:
        """End the child at once; an evaluation in progress is lost."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        if self.process is not None:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(CHILD_EXIT_SECONDS)
            self.process = None


def crashed_result(claim: Claim, executor: str, error: str) -> Result:
    """Describe an evaluation whose process died, so that the point gets another attempt."""
    return Result(
        point_id=claim.point_id, status="crashed", error=error, executor=executor,
        host=current_host(), user=current_user(), finished_at=datetime.now(timezone.utc),
    )


def _child_main(connection: Connection, ref: LikelihoodRef, names: tuple[str, ...], executor: str) -> None:
    # Ctrl-C reaches the whole process group; the parent decides what happens to claims.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    likelihood = None
    while True:
        try:
            claim = connection.recv()
        except (EOFError, OSError):
            return
        if likelihood is None:
            likelihood = _load_or_describe(ref, names)
        if isinstance(likelihood, str):
            result = Result(point_id=claim.point_id, status="failed", error=likelihood, executor=executor,
                            host=current_host(), pid=os.getpid(), user=current_user())
        else:
            result = evaluate_claim(likelihood, claim, executor)
        connection.send(result)


def _load_or_describe(ref: LikelihoodRef, names: tuple[str, ...]) -> Likelihood | str:
    try:
        return Likelihood(ref, names)
    except Exception as exc:
        return f"loading the likelihood {ref.describe()} failed: {describe_exception(exc)}"


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies, so SIGKILL of a worker stops its evaluation too."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: an orphaned child ends when it next writes to the closed pipe
