"""``advscale train`` in a child process, killed at a chosen step (for resume and fault tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def last_step(out: Path) -> int:
    """The last step ``out/metrics.jsonl`` records (0 before the first)."""
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    return max((json.loads(s).get("step", 0) for s in lines[-3:] if s.endswith("}")), default=0)


def kill_at_step(config_file: Path, out: Path, step: int, timeout: float = 120) -> None:
    """Run ``advscale train --config config_file --out out`` (one thread) and SIGKILL it once
    its metrics reach ``step``; fails when the run ends (or stalls) before that."""
    cmd = [sys.executable, "-m", "advscale", "train", "--config", str(config_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*cmd, "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + timeout
    try:
        while last_step(out) < step and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, (
            f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        )
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
