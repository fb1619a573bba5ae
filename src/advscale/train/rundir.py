"""A run directory: the files a training run owns, whether it is the same run, and one writer.

A run directory holds::

    config.json        the resolved config (a resume must match it)
    metrics.jsonl      one JSON line per logged step, epoch, guard check and event
    tb/                TensorBoard event files (when the tensorboard package is installed)
    checkpoints/last/  weights + full training state; checkpoints/best/ the best weights so far
    model.safetensors  final weights (+ model.json), loadable with advscale.load_model
    summary.json       the roll-up: clean, FGSM, PGD accuracy, time per epoch, images/s, events
    results.json       advscale.results file: per-epoch and final-eval records
    run.lock           while a process writes the directory: its pid, host and start time

Training, sweeps and comparisons all ask :class:`RunDir` the same questions: is a run here,
did it finish, was it made by this config, and who is writing it now.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Literal

from advscale.errors import UserError
from advscale.files import atomic_write_json, check_writable, open_regular, read_json
from advscale.results import Results, ResultsError, load_results

CONFIG = "config.json"
METRICS = "metrics.jsonl"
TENSORBOARD = "tb"
CHECKPOINTS = "checkpoints"
MODEL = "model"  # the stem of model.safetensors + model.json
SUMMARY = "summary.json"
RESULTS = "results.json"
LOCK = "run.lock"
RUN_FILES = (
    CONFIG,
    METRICS,
    TENSORBOARD,
    CHECKPOINTS,
    "model.safetensors",
    "model.json",
    SUMMARY,
    RESULTS,
)
# Keys that may change between a run and its resume without changing what is computed.
RESUME_FREE = {
    "progress",
    "log_every",
    "tensorboard",
    "checkpoint_every",
    "device",
    "distributed",
}
# Sections that never touch the weights: a resume may change them (the final evaluation then
# runs again with the new settings, without retraining).
EVAL_ONLY = ("eval",)

RunState = Literal["new", "started", "finished", "changed"]


def weight_diffs(diffs: list[str]) -> list[str]:
    """The entries of a :func:`config_diff` outside the :data:`EVAL_ONLY` sections."""
    return [d for d in diffs if d.split(":", 1)[0].split(".", 1)[0] not in EVAL_ONLY]


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Every key whose value differs between two resolved configs, as ``key: a in the run,
    b now`` (nested keys dotted); keys in :data:`RESUME_FREE` are ignored."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        if not prefix and key in RESUME_FREE:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_diff(a, b, name + ".")
        elif a != b:
            diffs.append(f"{name}: {a!r} in the run, {b!r} now")
    return diffs


class RunLockedError(UserError):
    """Another live process writes this run directory."""


class RunDir:
    """One run directory ``path``: its files, its state and its lock.

    Example:
        >>> rd = RunDir("runs/pgd")  # doctest: +SKIP
        >>> rd.state(config_to_dict(cfg))  # "new", "started", "finished" or "changed"  # doctest: +SKIP
        >>> with rd.locked():  # one writer at a time  # doctest: +SKIP
        ...     ...
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- what is here --------------------------------------------------------------------------
    def existing(self) -> list[str]:
        """The run files present (empty for a new run)."""
        return [n for n in RUN_FILES if os.path.lexists(self.path / n)]

    def saved_config(self) -> dict[str, Any] | None:
        """The config a run here was started with; None when none was started."""
        p = self.path / CONFIG
        if not p.exists():
            return None
        saved = read_json(p, "run config")
        if not isinstance(saved, dict):
            raise UserError(f"{p}: not a run config (a JSON mapping); start anew with --force")
        return saved

    def finished(self) -> Results | None:
        """The complete ``results.json`` of a run that finished here; None otherwise."""
        p = self.path / RESULTS
        if not p.exists():
            return None
        try:
            done = load_results(p)
        except ResultsError:
            return None
        return done if done.complete else None

    def diff(self, config: dict[str, Any]) -> list[str]:
        """How ``config`` differs from the run here (see :func:`config_diff`); [] for no run."""
        saved = self.saved_config()
        return [] if saved is None else config_diff(saved, config)

    def state(self, config: dict[str, Any]) -> RunState:
        """``new`` (no run), ``finished`` / ``started`` (by this config, logging keys aside) or
        ``changed`` (a run by another config). A run that differs only in its ``eval:`` section
        is ``started``: resuming it evaluates again without retraining."""
        done = self.finished()
        saved = done.config if done is not None else self.saved_config()
        if saved is None:
            return "new"
        diffs = config_diff(saved, config)
        if weight_diffs(diffs):
            return "changed"
        return "finished" if done is not None and not diffs else "started"

    # -- writing -------------------------------------------------------------------------------
    def check_resume(self, config: dict[str, Any]) -> list[str]:
        """Raise UserError unless a run started by ``config`` is here to resume; return the
        differences limited to the ``eval:`` section (allowed: they do not touch the weights)."""
        saved = self.path / CONFIG
        if not saved.exists():
            raise UserError(
                f"--resume: {self.path} holds no run (no config.json); start it without --resume"
            )
        self.refuse_links()
        try:
            diffs = self.diff(config)
        except UserError as e:
            raise UserError(f"--resume: {e}") from None
        refused = weight_diffs(diffs)
        if refused:
            raise UserError(
                f"--resume: {saved} was written by a different config ({'; '.join(refused)}); "
                "resume with the same config, or start a new run (--force overwrites)"
            )
        return diffs

    def refuse_links(self) -> None:
        """Refuse a run whose files (or checkpoints) are symbolic links: resuming would read a
        run that is not this one and write into whatever the links point at.

        Raises:
            UserError: naming the first link found.
        """
        names = [*RUN_FILES, LOCK]
        ckpts = self.path / CHECKPOINTS
        if ckpts.is_dir() and not ckpts.is_symlink():
            names += [f"{CHECKPOINTS}/{p.name}" for p in sorted(ckpts.iterdir())]
        for name in names:
            p = self.path / name
            if p.is_symlink():
                raise UserError(
                    f"{p}: is a symbolic link to {os.readlink(p)}; a run's files must be its "
                    "own: remove the link (or start anew with --force)"
                )

    def check_new(self, force: bool) -> list[str]:
        """The run files a new run replaces; UserError when there are some and not ``force``."""
        existing = self.existing()
        if existing and not force:
            raise UserError(
                f"{self.path} already holds a run ({', '.join(existing)}); use --resume to "
                "continue it or --force to overwrite it"
            )
        return existing

    def start(self, config: dict[str, Any], replace: list[str]) -> None:
        """Delete the run files ``replace`` and write ``config.json`` (hold the lock first)."""
        self.clear(replace)
        atomic_write_json(self.path / CONFIG, config)

    def clear(self, names: list[str] | None = None) -> None:
        """Delete ``names`` (default: everything in the directory except the lock file)."""
        if names is None:
            names = [p.name for p in self.path.iterdir()] if self.path.is_dir() else []
        for name in names:
            if name == LOCK:
                continue
            p = self.path / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
        self.path.mkdir(parents=True, exist_ok=True)

    # -- the lock ------------------------------------------------------------------------------
    def lock(self) -> None:
        """Become the one writer of this directory (created if missing).

        The lock file holds the writer's pid, host and start time. ``flock`` on it is released
        by the kernel when the holder dies, so a lock left by a dead process is taken over.

        Raises:
            RunLockedError: a live process holds it (naming that process).
        """
        if self._lock_fd is not None:
            return
        check_writable(self.path, "run directory", directory=True)
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / LOCK
        while True:
            fd = open_regular(path)  # never through a link: it is truncated below
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                raise RunLockedError(self._locked_message(path)) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            # The holder released (and unlinked) the file between our open and flock: retry.
            os.close(fd)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._lock_fd = fd

    def try_lock(self) -> RunLockedError | None:
        """:meth:`lock`, returning the refusal instead of raising it (None: locked)."""
        try:
            self.lock()
        except RunLockedError as e:
            return e
        return None

    def unlock(self) -> None:
        """Give the lock up (a no-op when not held)."""
        if self._lock_fd is None:
            return
        fd, self._lock_fd = self._lock_fd, None
        try:
            (self.path / LOCK).unlink(missing_ok=True)
        finally:
            os.close(fd)  # releases the flock

    def holder(self) -> dict[str, Any] | None:
        """What the lock file says about its writer (pid, host, started); None without one."""
        try:
            holder = read_json(self.path / LOCK, "lock file", limit=4096)
        except UserError:
            return None  # missing, being written, or not ours
        return holder if isinstance(holder, dict) else None

    def _locked_message(self, path: Path) -> str:
        h = self.holder() or {}
        started = h.get("started")
        when = (
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
            if isinstance(started, (int, float))
            else "an unknown time"
        )
        who = f"process {h.get('pid', '?')} on {h.get('host', '?')}, started {when}"
        if h.get("host") == socket.gethostname() and not _alive(h.get("pid")):
            who += " (gone, but a process it started still holds the lock)"
        return (
            f"{self.path} is being written by {who} (lock file {path}); wait for it to finish "
            "or stop it (--force does not override a live writer)"
        )

    def locked(self) -> _Locked:
        """``with rd.locked(): ...`` holds the lock for the block."""
        return _Locked(self)


class _Locked:
    def __init__(self, rd: RunDir) -> None:
        self.rd = rd

    def __enter__(self) -> RunDir:
        self.rd.lock()
        return self.rd

    def __exit__(self, *exc: object) -> None:
        self.rd.unlock()


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
