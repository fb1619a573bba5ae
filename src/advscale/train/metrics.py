"""The run's metric stream: ``metrics.jsonl`` (one JSON line per record) and TensorBoard scalars.

Only the main process writes; the others' calls are no-ops, so the loop logs unconditionally.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from advscale.errors import UserError
from advscale.files import atomic_write_text, open_regular
from advscale.train.rundir import METRICS, TENSORBOARD


def progress_bar(desc: str, total: int, initial: int, enabled: bool) -> Any:
    """A tqdm bar over an epoch's steps (a silent one when not ``enabled``)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        disable=not enabled,
        dynamic_ncols=True,
        leave=False,
    )


def epoch_record(
    progress: dict[str, Any],
    sums: list[float],
    *,
    complete: bool,
    val: float,
    lr: float,
    images: int,
    elapsed: float,
    guard: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """The ``epoch`` record at the trainer's ``progress`` (step, epoch...), ``complete`` or
    cut short: ``sums`` are Σ w·CE, Σ w, correct and n over all processes; ``images`` were trained on in
    ``elapsed`` seconds of training steps; the last ``guard`` check, when there is one."""
    rec = {
        "type": "epoch",
        "epoch": progress["epoch"],
        "step": progress["step"],
        "complete": complete,
        "train_loss": sums[0] / max(sums[1], 1e-12),
        "train_acc": sums[2] / max(sums[3], 1),
        "val_acc": val,
        "lr": lr,
        "time_s": elapsed,
        "images_per_s": images / elapsed if elapsed > 0 else None,
    }
    if guard:
        rec.update({f"guard_{k}": guard[-1][k] for k in ("clean_acc", "fgsm_acc", "pgd_acc")})
    return rec


class MetricsLog:
    """Appends records to ``run_dir/metrics.jsonl`` and mirrors their numbers to TensorBoard.

    Args:
        run_dir: the run directory.
        enabled: False in every process but the main one.
    """

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.path = run_dir / METRICS
        self.tb_dir = run_dir / TENSORBOARD
        self.enabled = enabled
        self._file: Any = None
        self._tb: Any = None

    def open_tensorboard(self) -> list[str]:
        """Start writing TensorBoard event files; returns notes (the package is missing...)."""
        if not self.enabled:
            return []
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            note = "tensorboard not installed: no event files (pip install tensorboard)"
            print(f"note: {note}", file=sys.stderr)  # logging was asked for: say so at once
            return [note]
        self._tb = SummaryWriter(str(self.tb_dir))
        return []

    def log(self, rec: dict[str, Any], step: int) -> None:
        """Append ``rec``; its numbers go to TensorBoard as ``<type>/<key>`` at its step."""
        if not self.enabled:
            return
        if self._file is None:
            # Kept open for the run; never through a link (a link here is refused).
            self._file = os.fdopen(open_regular(self.path, os.O_APPEND), "a")
        try:
            self._file.write(json.dumps(rec) + "\n")
            self._file.flush()
        except OSError as e:
            raise UserError(
                f"{self.path}: could not be written ({e.strerror}); the last checkpoint is "
                "intact: free some space and continue with --resume"
            ) from None
        if self._tb is not None:
            kind = rec.get("type", "step")
            for k, v in rec.items():
                if (
                    isinstance(v, (int, float))
                    and not isinstance(v, bool)
                    and k not in ("step", "epoch")
                ):
                    self._tb.add_scalar(f"{kind}/{k}", v, rec.get("step", step))

    def truncate(self, step: int) -> None:
        """Drop lines after ``step``: a resumed run rewrites them exactly."""
        if not (self.enabled and self.path.exists()):
            return
        keep = []
        for line in self.path.read_bytes().decode("utf-8", "replace").splitlines():
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a line cut by the kill
            if isinstance(rec, dict) and _step_at_most(rec.get("step", 0), step):
                keep.append(line)
        atomic_write_text(self.path, "".join(line + "\n" for line in keep))

    def reset(self) -> None:
        """Forget the lines of a run that restarts from the beginning."""
        if self.enabled:
            self.path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _step_at_most(value: object, step: int) -> bool:
    return isinstance(value, int | float) and value <= step
