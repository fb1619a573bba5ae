"""The CI-sized mutation check: a fixed list of one-line bugs that would ship a wrong number,
each put into a copy of ``src`` and run against the tests that must catch it.

    python scripts/mutation_check.py            # all, fails below THRESHOLD
    python scripts/mutation_check.py --list     # the mutants
    python scripts/mutation_check.py apgd_lt    # some of them, by name

A mutant whose original text is no longer in its file fails the check: the list is updated
with the code (a moved line is re-pointed, a removed one replaced by a bug of the new code).
The full mutation run is ``make mutation`` (``scripts/mutation.py``, cosmic-ray).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
THRESHOLD = 0.9  # the share of these mutants the tests must kill


class Mutant(NamedTuple):
    name: str
    file: str  # under src/advscale
    old: str  # text that occurs exactly once in the file
    new: str
    tests: str  # pytest arguments that must fail on the mutant


A, T, E = "tests/attacks", "tests/train", "tests/evaluate"
MUTANTS = [
    Mutant(
        "iter_ll_aims_at_the_top_class",
        "attacks/iterative.py",
        "(target if target is not None else logits.argmin(1)), -1.0",
        "(target if target is not None else logits.argmax(1)), -1.0",
        f"{A}/test_starts_and_targets.py",
    ),
    Mutant(
        "l2_start_on_the_sphere",
        "attacks/norms.py",
        "g * eps * r.pow(1.0 / d)",
        "g * eps * r.pow(0.0 / d)",
        f"{A}/test_starts_and_targets.py",
    ),
    Mutant(
        "linf_start_one_sided",
        "attacks/norms.py",
        "delta = (2 * u - 1) * eps",
        "delta = u * eps",
        f"{A}/test_starts_and_targets.py",
    ),
    Mutant(
        "start_not_checked",
        "attacks/base.py",
        "if early_stop and (t > 0 or self.random_start):",
        "if early_stop and t > 0:",
        f"{A}/test_starts_and_targets.py",
    ),
    Mutant(
        "apgd_strict_rho",
        "attacks/apgd.py",
        'stalled = st["succ"] <= self.rho * span',
        'stalled = st["succ"] < self.rho * span',
        f"{A}/test_apgd_schedule.py",
    ),
    Mutant(
        "apgd_no_gain_at_first_check",
        "attacks/apgd.py",
        '"reduced": torch.ones(len(idx), dtype=torch.bool, device=x.device)',
        '"reduced": torch.zeros(len(idx), dtype=torch.bool, device=x.device)',
        f"{A}/test_apgd_schedule.py",
    ),
    Mutant(
        "apgd_first_step_against_the_start",
        "attacks/apgd.py",
        'st["grad"], st["loss"] = grad, torch.zeros_like(loss)',
        'st["grad"], st["loss"] = grad, loss',
        f"{A}/test_apgd_schedule.py",
    ),
    Mutant(
        "apgd_checkpoint_decrease",
        "attacks/apgd.py",
        "h = max(h - decrease, shortest)",
        "h = max(h - decrease - 1, shortest)",
        f"{A}/test_apgd_schedule.py",
    ),
    Mutant(
        "kurakin_normaliser",
        "train/step.py",
        "/ stats[0].clamp_min(1e-12)",
        "/ len(w)",
        f"{T}/test_recipe_numbers.py",
    ),
    Mutant(
        "kurakin_default_sigma",
        "train/recipes.py",
        "self.sigma = self.eps / 2 if sigma is None else float(sigma)",
        "self.sigma = self.eps if sigma is None else float(sigma)",
        f"{T}/test_recipe_numbers.py",
    ),
    Mutant(
        "kurakin_sigma_units",
        "train/recipes.py",
        "sigma=None if r.sigma is None else r.sigma / 255,",
        "sigma=r.sigma,",
        f"{T}/test_recipe_numbers.py",
    ),
    Mutant(
        "n_fgsm_noise_range",
        "train/recipes.py",
        "eta = (x + (2 * u - 1) * (self.noise * self.eps)).clamp(0, 1) - x",
        "eta = (x + (2 * u - 1) * self.eps).clamp(0, 1) - x",
        f"{T}/test_recipe_numbers.py",
    ),
    Mutant(
        "record_counts_fixed_misclassified_examples",
        "evaluate/robust.py",
        "robust = active & run.correct",
        "robust = run.correct",
        f"{E}/test_record_numbers.py",
    ),
    Mutant(
        "record_lets_the_attack_skip_iterates",
        "evaluate/robust.py",
        'reserved = ("eps", "seed", "early_stop")',
        'reserved = ("eps", "seed")',
        f"{E}/test_record_numbers.py",
    ),
    Mutant(
        "leak_against_any_control",
        "evaluate/label_leak.py",
        "return bool(tests) and all(_passes(t, alpha, min_effect) for t in tests.values())",
        "return bool(tests) and any(_passes(t, alpha, min_effect) for t in tests.values())",
        f"{E}/test_record_numbers.py",
    ),
    Mutant(
        "fold_batchnorm_without_running_stats",
        "models/fuse.py",
        "if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.running_mean is None:",
        "if not isinstance(bn, nn.modules.batchnorm._BatchNorm):",
        "tests/models/test_fuse.py::test_batch_norm_is_folded_only_with_running_statistics",
    ),
    Mutant(
        "streamed_pixels_over_256",
        "data/stream.py",
        "np.divide(images, np.float32(255.0), out=out, dtype=np.float32)",
        "np.divide(images, np.float32(256.0), out=out, dtype=np.float32)",
        "tests/data/test_stream.py",
    ),
    Mutant(
        "fast_jpeg_colour_to_grey_by_luma_only",
        "data/decode.py",
        '("Gray", "L"): "GRAY"}',
        '("Gray", "L"): "GRAY", ("YCbCr", "L"): "GRAY"}',
        "tests/data/test_jpeg_decoder.py",
    ),
]


def run(mutant: Mutant, src: Path) -> tuple[bool, float]:
    """Whether the tests fail with ``mutant`` put into the copy ``src``; and their seconds."""
    path = src / "advscale" / mutant.file
    original = path.read_text()
    if original.count(mutant.old) != 1:
        raise SystemExit(
            f"scripts/mutation_check.py: mutant {mutant.name}: the text {mutant.old!r} is not "
            f"exactly once in src/advscale/{mutant.file}; update the mutant with the code"
        )
    path.write_text(original.replace(mutant.old, mutant.new))
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-W", "ignore"]
    start = time.monotonic()
    try:
        done = subprocess.run(
            [*cmd, *mutant.tests.split()], cwd=ROOT, env=env, capture_output=True, check=False
        )
    finally:
        path.write_text(original)
    return done.returncode != 0, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="mutants to run (default: all)")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = p.parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(f"{m.name}: src/advscale/{m.file}: {m.old!r} -> {m.new!r}")
        return 0
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        raise SystemExit(f"unknown mutants {sorted(unknown)}; see --list")
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    sys.path.insert(0, str(ROOT / "src"))
    from advscale.data import DataError, find_data_dir

    try:
        find_data_dir()
    except DataError as e:  # the tests skip without the data, and every mutant would survive
        print(f"mutation check skipped: {e}")
        return 0
    signal.signal(signal.SIGINT, signal.default_int_handler)
    killed = 0
    with tempfile.TemporaryDirectory(prefix="advscale-mutants-") as d:
        src = Path(d) / "src"
        shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
        for m in chosen:
            dead, seconds = run(m, src)
            killed += dead
            print(f"{'killed  ' if dead else 'SURVIVED'} {m.name} ({seconds:.0f} s)", flush=True)
    score = killed / len(chosen)
    print(f"mutation check: {killed}/{len(chosen)} killed ({score:.0%}; threshold {THRESHOLD:.0%})")
    return 0 if score >= THRESHOLD else 1


if __name__ == "__main__":
    sys.exit(main())
