"""Write a benchmark's results as one section of docs/benchmarks.md.

Each benchmark owns one ``## `` section, replaced in place on every run,
headed by the command, the machine and the date that produced it.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import sys
from pathlib import Path

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEach section is written by the script it names; rerun the command to refresh it.\n"


def machine() -> str:
    """Describe this machine: CPU model, cores, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def write_section(title: str, body: str, command: str | None = None) -> None:
    """Replace (or append) the section ``## title`` of docs/benchmarks.md."""
    command = command or "python " + " ".join(sys.argv)
    today = datetime.date.today().isoformat()
    section = (
        f"## {title}\n\n"
        f"Command: `{command}`  \nMachine: {machine()}  \nDate: {today}\n\n{body.strip()}\n"
    )
    text = DOCUMENT.read_text() if DOCUMENT.exists() else HEADER
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOCUMENT.parent.mkdir(exist_ok=True)
    DOCUMENT.write_text(text.rstrip("\n") + "\n")
