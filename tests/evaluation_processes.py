"""Worker processes for the evaluation tests, started with the forkserver method.

The functions live in their own module so that child processes can import them.
"""

import os

from campaign.api import open_campaign
from campaign.evaluation import run_worker


def worker_process(url: str, name: str, barrier, env: dict, idle_exit: float) -> None:
    """Run ``campaign worker`` logic in this process; an escaping exception gives exit status 1."""
    os.environ.update(env)
    if barrier is not None:
        barrier.wait()
    fit = open_campaign(name, url)
    run_worker(fit, idle_exit=idle_exit, poll_seconds=0.05)
