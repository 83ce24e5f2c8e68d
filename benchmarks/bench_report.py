"""What the single-study benchmark scripts record about the machine, and how they publish a record:
`<out>/<name>.json` and `.md` written atomically (bert4rec.io.write_json_and_markdown), then printed."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bert4rec.evaluation.results import package_version
from bert4rec.io import write_json_and_markdown


def machine(**packages: str) -> dict[str, Any]:
    """Platform, CPU count, Python, the versions of `packages` (record key -> distribution name, e.g.
    faiss="faiss-cpu"), the git commit and the load average when the measurement ended."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        **{key: package_version(package) for key, package in packages.items()},
        "git_commit": commit.stdout.strip() or None,
        "load_average_at_end": [round(x, 2) for x in load] if load else None,
    }


def publish(
    out: Path, name: str, record: dict[str, Any], render: Callable[[dict[str, Any]], str], note: str
) -> int:
    """Stamp `record` with the machine-independent `note` and the date, write it and its markdown
    table (`render(record)`) to `out`, print the table and the paths; 0 for main() to return."""
    record = {**record, "note": note, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    report = render(record)
    json_path, md_path = write_json_and_markdown(out, name, record, report)
    print(report)
    print(f"wrote {json_path} and {md_path}")
    return 0
