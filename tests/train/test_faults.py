"""Faults a run survives: SIGTERM/SIGINT, a kill during the final evaluation, a second writer,
weights gone non-finite. Each test runs a real training of a few seconds on Fashion-MNIST."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from run_helpers import last_step
from safetensors.torch import load_file

from advscale.cli import main
from advscale.errors import RunInterrupted, UserError
from advscale.train import load_config, train
from advscale.train.checkpoint import find_checkpoint

TIMING = {"time_s", "images_per_s"}


def _settings(tiny_settings, **extra: object) -> list[str]:
    # 8 steps per epoch; rs_fgsm draws random starts, so its random states must survive.
    return tiny_settings(
        **{
            "recipe.name": "rs_fgsm",
            "data.n_train": 256,
            "epochs": 2,
            "log_every": 1,
            "deterministic": "true",
            "eval.n": 100,
            "eval.attack_kwargs": "{pgd: {steps: 2}}",
            **extra,
        }
    )


def _config_file(tmp_path: Path, settings: list[str]) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(load_config(None, settings).model_dump(mode="json")))
    return path


def _start(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "advscale", "train", "--config", str(config), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*cmd, *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _wait_for(proc: subprocess.Popen, ready, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.fail(f"the run ended before {what}: {proc.stderr.read()[-2000:]}")
    assert ready(), f"timed out waiting for {what}"


def _saved_state(out: Path) -> dict | None:
    path = find_checkpoint(out / "checkpoints", "last")
    try:
        return torch.load(path / "state.pt", weights_only=True) if path else None
    except (OSError, RuntimeError, EOFError):
        return None  # being replaced right now


def _metrics(out: Path) -> list[dict]:
    recs = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in r.items() if k not in TIMING}
        for r in recs
        if r["type"] in ("step", "epoch")
    ]


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(a), load_file(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_sigterm_checkpoints_and_resume_ends_as_an_uninterrupted_run(
    fmnist_dir, tmp_path, tiny_settings, capsys
):
    settings = _settings(tiny_settings, epochs=6)  # long enough to be caught mid-run
    ref = train(load_config(None, settings), tmp_path / "ref")
    config, out = _config_file(tmp_path, settings), tmp_path / "run"
    proc = _start(config, out)
    try:
        _wait_for(proc, lambda: last_step(out) >= 3, "step 3")
        # A second writer is refused while this one lives, naming the directory.
        assert main(["train", "--config", str(config), "--out", str(out), "--resume"]) == 2
        err = capsys.readouterr().err
        assert f"{out} is being written by process {proc.pid}" in err
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().strip()
    assert len(err.splitlines()) == 1 and "SIGTERM: stopped after step" in err, err
    assert "--resume" in err and "Traceback" not in err
    state = _saved_state(out)
    assert state is not None and not state["finished"]
    assert state["step"] == json.loads(err.split("step ")[1].split(",")[0])
    assert not (out / "summary.json").exists() and not (out / "run.lock").exists()

    resumed = train(load_config(config, []), out, resume=True)
    for key in ("clean_accuracy", "fgsm_accuracy", "pgd_accuracy", "steps", "epochs"):
        assert resumed[key] == ref[key], key
    assert _metrics(out) == _metrics(tmp_path / "ref")
    assert _same_weights(out / "model.safetensors", tmp_path / "ref/model.safetensors")


def test_sigint_stops_at_the_epoch_boundary_with_exit_status_130(
    fmnist_dir, tmp_path, tiny_settings
):
    settings = _settings(tiny_settings, epochs=3)
    out = tmp_path / "run"

    def ctrl_c(rec: dict) -> None:
        if rec["epoch"] == 0:
            os.kill(os.getpid(), signal.SIGINT)  # noted by the handler, acted on at the boundary

    with pytest.raises(RunInterrupted, match="SIGINT: stopped after step 8,") as caught:
        train(load_config(None, settings), out, on_epoch=ctrl_c)
    assert caught.value.exit_status == 130
    assert _saved_state(out)["step"] == 8
    # The handler is gone with the run: a later Ctrl-C is Python's KeyboardInterrupt again.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    summary = train(load_config(None, settings), out, resume=True)
    assert summary["steps"] == 24


def test_kill_during_final_evaluation_resumes_without_retraining_and_new_eval_settings(
    fmnist_dir, tmp_path, tiny_settings
):
    # A slow final evaluation (1000 examples, 300 PGD steps) to be killed in the middle of.
    slow = _settings(
        tiny_settings, epochs=1, **{"eval.n": 1000, "eval.attack_kwargs": "{pgd: {steps: 300}}"}
    )
    config, out = _config_file(tmp_path, slow), tmp_path / "run"
    proc = _start(config, out)
    try:
        _wait_for(proc, lambda: (_saved_state(out) or {}).get("finished"), "the final evaluation")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / "summary.json").exists()
    trained = load_file(find_checkpoint(out / "checkpoints", "last") / "model.safetensors")
    steps_logged = len(_metrics(out))

    # The resume changes only the eval: section (fewer examples, another ε): accepted.
    fast = load_config(
        config, ["eval.n=50", "eval.eps=[4]", "eval.attack_kwargs={pgd: {steps: 1}}"]
    )
    summary = train(fast, out, resume=True)
    assert summary["steps"] == 8 and set(summary["robust_accuracy"]["pgd"]) == {"4"}
    assert len(_metrics(out)) == steps_logged  # not one training step more
    final = load_file(out / "model.safetensors")
    assert all(torch.equal(final[k], trained[k]) for k in trained)
    assert json.loads((out / "config.json").read_text())["eval"]["n"] == 50
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and {r["n"] for r in results["records"] if r["type"] == "eval"} == {
        50
    }
    assert any("evaluation settings changed on resume" in n for n in summary["notes"])
    # A change outside eval: is still refused.
    with pytest.raises(Exception, match=r"different config \(recipe.eps"):
        train(load_config(config, ["recipe.eps=4"]), out, resume=True)


def test_a_checkpoint_is_never_written_with_non_finite_weights(
    fmnist_dir, tmp_path, tiny_settings, tiny_cnn
):
    # A batch-norm buffer overflows at the end of the second epoch (as with activations too
    # large for float32) while every loss was finite: the epoch's checkpoint must not be written.
    model = tiny_cnn()
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn_name = next(n for n, m in model.named_modules() if m is bn)

    def overflow(rec: dict) -> None:
        if rec["epoch"] == 1:
            bn.running_var[0] = float("inf")

    out = tmp_path / "run"
    with pytest.raises(UserError) as caught:
        train(load_config(None, _settings(tiny_settings)), out, model=model, on_epoch=overflow)
    last = find_checkpoint(out / "checkpoints", "last")
    assert str(caught.value).startswith(
        f"training stopped: non-finite weights ({bn_name}.running_var)"
    )
    assert f"the last good checkpoint ({last}) is intact" in str(caught.value)
    assert _saved_state(out)["step"] == 8  # the first epoch's
    weights = load_file(last / "model.safetensors")
    assert all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())


@pytest.mark.slow
def test_under_ddp_every_process_stops_at_the_same_step(fmnist_dir, tmp_path, tiny_settings):
    settings = _settings(tiny_settings, epochs=3, batch_size=16)  # 16 steps per epoch
    config, out = _config_file(tmp_path, settings), tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "advscale", "train", "--config", str(config), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(proc, lambda: last_step(out) >= 3, "step 3")
        # Only process 0 (the lock holder) is signalled; process 1 learns of it at the next step.
        os.kill(json.loads((out / "run.lock").read_text())["pid"], signal.SIGTERM)
        assert proc.wait(120) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    stops = [
        ln.split("stopped after step ")[1].split(",")[0]
        for ln in err.splitlines()
        if "SIGTERM: stopped" in ln
    ]
    assert len(stops) == 2 and stops[0] == stops[1], err[-3000:]
    state = _saved_state(out)
    assert state["step"] == int(stops[0]) and len(state["ranks"]) == 2
    resumed = subprocess.run(
        [*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["steps"] == 48


# -- a run directory's files are its own; a full disk loses nothing -------------------------------
@pytest.fixture(scope="module")
def finished_run(fmnist_dir, tmp_path_factory) -> tuple[Path, Path]:
    """(config file, run directory) of a finished one-epoch run, trained once for the module."""
    tmp = tmp_path_factory.mktemp("finished")
    settings = [
        "data.n_train=128",
        "data.n_val=50",
        "batch_size=32",
        "progress=false",
        "tensorboard=false",
        "model.kwargs={width: 0.25}",
        "eval.n=50",
        "eval.attack_kwargs={pgd: {steps: 1}}",
        "eval.label_leak=false",
        "guard.enabled=false",
        "epochs=1",
    ]
    config = _config_file(tmp, settings)
    train(load_config(config, []), tmp / "run")
    return config, tmp / "run"


def _copy_run(finished_run, tmp_path) -> tuple[Path, Path]:
    config, run = finished_run
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return config, out


def _snapshot(path: Path) -> dict[str, bytes]:
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(p.relative_to(path.parent)): p.read_bytes() for p in files if p.is_file()}


def _one_line(capsys) -> str:
    """The one error line on stderr (progress bars aside), with no traceback."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.split("\n") if ln.strip() and "img/s]" not in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("name", ["metrics.jsonl", "run.lock", "checkpoints/last", "config.json"])
def test_a_link_in_a_run_directory_is_refused_on_resume_and_what_it_points_at_is_untouched(
    finished_run, tmp_path, capsys, name
):
    config, out = _copy_run(finished_run, tmp_path)
    link = out / name
    victim = tmp_path / "victim"
    if link.is_dir():
        shutil.move(link, victim)  # another run's checkpoint, say
    else:
        victim.write_bytes(link.read_bytes() if link.exists() else b"precious\n")
        link.unlink(missing_ok=True)
    link.symlink_to(victim)
    before = _snapshot(victim)
    assert main(["train", "--config", str(config), "--out", str(out), "--resume"]) == 2
    line = _one_line(capsys)
    assert f"{link}: is a symbolic link" in line, line
    assert _snapshot(victim) == before and link.is_symlink()
    # --force starts anew without following the link: it removes a run file's link, and is
    # refused at a linked lock (taken before anything else, it may not be removed unasked).
    forced = main(["train", "--config", str(config), "--out", str(out), "--force"])
    assert forced == (2 if name == "run.lock" else 0), capsys.readouterr().err
    assert _snapshot(victim) == before and link.is_symlink() == (name == "run.lock")


def test_a_checkpoint_sidecar_that_is_not_json_is_named_on_resume(finished_run, tmp_path, capsys):
    config, out = _copy_run(finished_run, tmp_path)
    sidecar = out / "checkpoints" / "last" / "model.json"
    sidecar.write_text("{not json")
    assert main(["train", "--config", str(config), "--out", str(out), "--resume"]) == 2
    assert f"{sidecar}: not valid JSON" in _one_line(capsys)


@pytest.fixture
def small_disk(tmp_path):
    """A 512 kB tmpfs (root only: skipped elsewhere; tests/core/test_files.py covers a full
    disk portably)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True
        ).returncode
    ):
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` until ``leave`` bytes are free."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * max(free - leave, 0))


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_half_file(
    finished_run, fmnist_dir, small_disk, tmp_path, capsys
):
    config, run = finished_run
    model = run / "model"
    _fill(small_disk, leave=0)
    out = small_disk / "results.json"
    evaluate = ["eval", "--model", str(model), "--data-dir", str(fmnist_dir), "--n", "20"]
    assert main([*evaluate, "--attacks", "fgsm", "--eps", "8", "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert f"{out}: could not be written (No space left on device" in line, line
    assert main(["report", str(run), "--out", str(small_disk / "r.md")]) == 2
    assert "No space left on device" in _one_line(capsys)
    (small_disk / "filler").unlink()
    # Training: the config fits, a checkpoint does not.
    _fill(small_disk, leave=48 * 1024)
    out = small_disk / "run"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    assert "No space left on device" in _one_line(capsys)
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "run"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_a_finished_runs_summary_that_is_not_json_is_named_on_resume(
    finished_run, tmp_path, capsys
):
    config, out = _copy_run(finished_run, tmp_path)
    (out / "summary.json").write_bytes(b"\xff\xfe not a summary")
    assert main(["train", "--config", str(config), "--out", str(out), "--resume"]) == 2
    assert f"{out / 'summary.json'}: not UTF-8 text" in _one_line(capsys)
