"""torchrun's own launcher: two nodes, elastic restarts, a dead peer. Loopback and gloo only.

Every run trains small_cnn (batch norm) with paper A's recipe (step l.l. on k of m examples,
per-example ε, batch norm in eval mode while attacking), 2 processes, a checkpoint every 3 of
24 steps. The reference is one uninterrupted ``torchrun --nproc-per-node 2`` run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from advscale.train import load_config

pytestmark = pytest.mark.slow

# The worker: kills itself (SIGKILL) at the end of the first epoch, in the first attempt only, when
# its rank is the one named; a worker that torchrun restarted finds TORCHELASTIC_RESTART_COUNT=1.
WORKER = """
import os, signal, sys
from advscale.train import load_config, train

kill_rank = int(sys.argv[3])

def on_epoch(rec):
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if first_attempt and int(os.environ["RANK"]) == kill_rank and rec["step"] == 8:
        os.kill(os.getpid(), signal.SIGKILL)

train(load_config(sys.argv[1], []), sys.argv[2], on_epoch=on_epoch)
"""
TORCHRUN = (sys.executable, "-m", "torch.distributed.run")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


SETTINGS = {
    "progress": "false",
    "tensorboard": "false",
    "model.kwargs": "{width: 0.25}",
    "optimizer.name": "adamw",
    "optimizer.lr": 0.005,
    "optimizer.weight_decay": 0,
    "schedule.name": "constant",
    "eval.label_leak": "false",
    "guard.enabled": "false",
    "batch_size": 32,
}


def _settings(**extra: object) -> list[str]:
    return [
        f"{k}={v}"
        for k, v in {
            **SETTINGS,
            "recipe.name": "kurakin",
            "recipe.eps": 8,
            "recipe.m": 8,
            "recipe.k": 4,
            "epochs": 3,
            "data.n_train": 256,
            "data.n_val": 50,
            "checkpoint_every": 3,
            "deterministic": "true",
            "eval.n": 50,
            "eval.attack_kwargs": "{pgd: {steps: 2}}",
            "distributed.timeout_s": 60,
            "log_every": 1,
            **extra,
        }.items()
    ]


@pytest.fixture(scope="module")
def setup(fmnist_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("torchrun")
    cfg = tmp / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(load_config(None, _settings()).model_dump(mode="json")))
    worker = tmp / "worker.py"
    worker.write_text(WORKER)
    return cfg, worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(
    worker: Path, cfg: Path, out: Path, *opts: str, kill_rank: int = -1
) -> subprocess.Popen:
    cmd = [*TORCHRUN, "--monitor-interval", "0.1", *opts, str(worker), str(cfg), str(out)]
    return subprocess.Popen(
        [*cmd, str(kill_rank)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return out


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "model.safetensors")


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Names of the tensors that are not bit-for-bit equal."""
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.fixture(scope="module")
def reference(setup):
    """The weights of the uninterrupted run on one node with two processes."""
    cfg, worker = setup
    out = cfg.parent / "ref"
    proc = _launch(worker, cfg, out, "--standalone", "--nproc-per-node", "2")
    log = _finish(proc)
    assert proc.returncode == 0, log[-4000:]
    return _weights(out)


@pytest.fixture(scope="module")
def other_recipes(fmnist_dir, tmp_path_factory):
    """``run(recipe)``: the config file, worker and uninterrupted weights of another recipe."""
    cache: dict[str, tuple[Path, Path, dict[str, torch.Tensor]]] = {}

    def run(recipe: str) -> tuple[Path, Path, dict[str, torch.Tensor]]:
        if recipe not in cache:
            tmp = tmp_path_factory.mktemp(recipe)
            cfg, worker = tmp / "cfg.yaml", tmp / "worker.py"
            config = load_config(None, _settings(**{"recipe.name": recipe}))
            cfg.write_text(yaml.safe_dump(config.model_dump(mode="json")))
            worker.write_text(WORKER)
            proc = _launch(worker, cfg, tmp / "ref", "--standalone", "--nproc-per-node", "2")
            log = _finish(proc)
            assert proc.returncode == 0, log[-4000:]
            cache[recipe] = cfg, worker, _weights(tmp / "ref")
        return cache[recipe]

    return run


# Batch norm in eval mode while attacking (the default) for every recipe; rs_fgsm and kurakin draw
# random starts / ε per process.
@pytest.mark.parametrize(
    "recipe, kill_rank", [("kurakin", 0), ("kurakin", 1), ("fgsm", 0), ("rs_fgsm", 1)]
)
def test_elastic_restart_after_a_killed_rank_ends_with_the_same_weights(
    setup, reference, other_recipes, tmp_path, recipe, kill_rank
):
    cfg, worker = setup
    if recipe != "kurakin":
        cfg, worker, reference = other_recipes(recipe)
    out = tmp_path / "restarted"
    opts = ("--standalone", "--nproc-per-node", "2", "--max-restarts", "1")
    proc = _launch(worker, cfg, out, *opts, kill_rank=kill_rank)
    log = _finish(proc)
    assert proc.returncode == 0, log[-4000:]
    # The first attempt's rank died (SIGKILL) after the checkpoint of step 6; the second attempt
    # resumed from it.
    assert f"failed (exitcode: -9) local_rank: {kill_rank}" in log, log[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 24
    assert any("restarted by torchrun" in n for n in summary["notes"])
    assert _same(_weights(out), reference) == []


def _worker_of_rank(agents: list[subprocess.Popen], rank: int) -> int | None:
    """The pid of the worker process of global ``rank`` among the agents' children."""
    for agent in agents:
        for task in Path(f"/proc/{agent.pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                try:
                    env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                if f"RANK={rank}".encode() in env:
                    return int(child)
    return None


def _two_nodes(port: int) -> tuple[str, ...]:
    opts = ("--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d")
    return (*opts, "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "advscale-test")


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGSTOP], ids=["dead", "hung"])
def test_a_dead_or_hung_peer_ends_the_job_with_a_clear_message(fmnist_dir, tmp_path, signum):
    # 320 steps: stopped well before the end. A hung peer (SIGSTOP) is given up after
    # distributed.timeout_s.
    settings = _settings(epochs=40, **{"distributed.timeout_s": 10})
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(load_config(None, settings).model_dump(mode="json")))
    out, port = tmp_path / "run", _free_port()
    cmd = [*TORCHRUN, "--monitor-interval", "0.1", *_two_nodes(port), "-m", "advscale", "train"]
    cmd += ["--config", str(cfg), "--out", str(out)]
    agents = [
        subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    victim = None
    try:
        deadline = time.monotonic() + 120
        metrics = out / "metrics.jsonl"
        while time.monotonic() < deadline and all(a.poll() is None for a in agents):
            lines = metrics.read_text().splitlines() if metrics.exists() else []
            if len(lines) >= 4:
                break
            time.sleep(0.01)
        victim = _worker_of_rank(agents, 1)
        assert victim is not None and all(a.poll() is None for a in agents)
        (first,) = [a for a in agents if _worker_of_rank([a], 0) is not None]
        os.kill(victim, signum)
        # Bounded: process 0's agent ends on its own (the test's timeout is the bound, not a
        # measure); the hung one's agent is then ended here.
        survivor = _finish(first, timeout=120)
    finally:
        if victim is not None and signum == signal.SIGSTOP:
            os.kill(victim, signal.SIGKILL)
        for a in agents:
            if a.poll() is None:
                a.kill()
    assert first.returncode != 0
    assert "another process of the run ended or stopped answering" in survivor, survivor[-4000:]
    assert "process 0 of 2" in survivor and "[rank0]: Traceback" not in survivor
    assert "the last checkpoint (" in survivor and "--resume" in survivor


def test_two_nodes_give_the_weights_of_one_node_with_two_processes(setup, reference, tmp_path):
    cfg, worker = setup
    out, port = tmp_path / "two_nodes", _free_port()
    nodes = [_launch(worker, cfg, out, *_two_nodes(port)) for _ in range(2)]
    logs = [_finish(p) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert _same(_weights(out), reference) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signalled_agent_then_resume_ends_with_the_same_weights(
    setup, reference, tmp_path, signum
):
    cfg, _ = setup
    out = tmp_path / "signalled"
    cmd = [*TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "advscale", "train"]
    cmd += ["--config", str(cfg), "--out", str(out)]
    agent = subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        metrics, deadline = out / "metrics.jsonl", time.monotonic() + 120
        while time.monotonic() < deadline and agent.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 6:
                break
            time.sleep(0.01)
        assert agent.poll() is None, "the run ended before it could be signalled"
        agent.send_signal(signum)
        log = _finish(agent, timeout=120)
    finally:
        if agent.poll() is None:
            agent.kill()
    assert agent.returncode != 0 and not (out / "summary.json").exists(), log[-3000:]
    resumed = subprocess.run(
        [*cmd, "--resume"], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _same(_weights(out), reference) == []
