"""``torchrun -m advscale eval``: two processes (gloo on CPU) share the attacks' batches and
rank 0 writes records equal to a one-process run's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from advscale.cli import main
from advscale.evaluate.distributed import Shard, batch_seed
from advscale.models import save_model
from advscale.results import load_results


def test_one_process_shard_owns_every_batch_and_sums_nothing():
    shard = Shard()
    assert not shard.enabled and shard.is_main and all(shard.owns(k) for k in range(5))
    t = torch.tensor([True, False])
    assert shard.sum(t) is t and shard.max(1.5) == 1.5
    second = Shard(1, 2)
    assert [second.owns(k) for k in range(4)] == [False, True, False, True]
    with pytest.raises(ValueError, match="rank 2"):
        Shard(2, 2)
    assert len({batch_seed(0, k) for k in range(100)} | {batch_seed(1, 0)}) == 101


@pytest.mark.slow
def test_two_processes_write_the_records_of_one(tiny_model, fmnist_dir, tmp_path):
    ckpt = tmp_path / "tiny"
    save_model(tiny_model, ckpt, dataset="fashion-mnist")
    # A cascade: the second attack runs on what the first left, so the processes must agree on
    # every example's verdict after each attack. 90 examples in batches of 16 split unevenly.
    args = [
        *("eval", "--model", str(ckpt), "--data-dir", str(fmnist_dir), "--examples", "90"),
        *("--attacks", "fgsm,pgd,apgd", "--eps", "4,8", "--apgd-steps", "4", "--cascade"),
        *("--batch-size", "16", "--device", "cpu"),
    ]
    assert main([*args, "--out", str(tmp_path / "one.json")]) == 0
    cmd = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        *("-m", "advscale", *args, "--out", str(tmp_path / "two.json")),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("wrote ") == 1  # rank 0 alone prints and writes

    one, two = load_results(tmp_path / "one.json"), load_results(tmp_path / "two.json")
    assert two.config["processes"] == 2 and one.config["processes"] == 1
    assert len(one.records) == len(two.records) == 8
    for a, b in zip(one.records, two.records, strict=True):
        # Attack time is the slowest process's wall time; everything else is the same.
        assert {**a, "seconds": 0} == {**b, "seconds": 0}, (a, b)
        assert b["seconds"] > 0
    assert one.summary == two.summary
