"""Mutation testing of the modules that compute shipped numbers, with cosmic-ray.

Each module is mutated with cosmic-ray's operators and the tests of its package are run on every
mutant, in a copy of the tree (the working tree is never modified). A mutant the tests pass is a
*survivor*: a change of behaviour nobody would notice. The score per module is killed / tested.

    python scripts/mutation.py                      # every mutant: hours on two cores
    python scripts/mutation.py --sample 12 --seed 0 # a fixed, seeded sample per module

The sample is drawn per module (a folder, attacks/, counts as one) from cosmic-ray's full list of
mutants sorted by (file, operator, occurrence), so the same seed on the same source gives the
same mutants.
Survivors are listed with their diff and their fate from ``scripts/mutation_fates.json``
(``"module:operator:occurrence": "equivalent: why"``); ``--out`` writes ``NAME.json`` and
``NAME.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Module (a file, or a folder whose files are sampled together) → the tests run on its mutants:
#: the test files of its package that exercise it (the whole package's tests are several times
#: slower and kill little more).
MODULES: dict[str, str] = {
    "src/advscale/train/recipes.py": "tests/train/test_recipes.py tests/train/test_recipe_numbers.py",
    "src/advscale/train/step.py": "tests/train/test_recipe_numbers.py tests/train/test_training.py "
    "tests/train/test_ddp.py",
    "src/advscale/train/guards.py": "tests/train/test_guards.py tests/train/test_training.py "
    "tests/train/test_resume.py",
    "src/advscale/evaluate/robust.py": "tests/evaluate/test_robust.py "
    "tests/evaluate/test_record_numbers.py tests/evaluate/test_eval_attacks.py "
    "tests/evaluate/test_distributed.py",
    "src/advscale/evaluate/inputs.py": "tests/evaluate/test_inputs.py tests/evaluate/test_robust.py",
    "src/advscale/evaluate/label_leak.py": "tests/evaluate/test_label_leak.py "
    "tests/evaluate/test_record_numbers.py",
    "src/advscale/evaluate/transfer_matrix.py": "tests/analysis/test_transfer_matrix.py",
    "src/advscale/models/fuse.py": "tests/models/test_fuse.py tests/evaluate/test_record_numbers.py",
    "src/advscale/attacks": "tests/attacks",
}


def copy_tree(dest: Path) -> None:
    """The files the tests need, without caches or run outputs."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in ("src", "tests", "configs"):
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "conftest.py"):
        shutil.copy2(ROOT / name, dest / name)


def test_command(tests: str) -> str:
    return f"{sys.executable} -m pytest -x -q -p no:cacheprovider {tests}"


def cosmic(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    exe = Path(sys.executable).with_name("cosmic-ray")
    subprocess.run([str(exe), *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def write_config(path: Path, module: str, tests: str, timeout: float) -> None:
    path.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{module}"\n'
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f'test-command = "{test_command(tests)}"\n'
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )


def sample_mutants(db_path: Path, n: int | None, seed: int, known: dict[str, str]) -> int:
    """Mark all but a seeded sample of ``n`` mutants as skipped, and those of the sample with an
    outcome in ``known`` (id → outcome, from an earlier run on the same source); returns the
    full count."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(db_path), WorkDB.Mode.open) as db:
        items = sorted(
            db.pending_work_items,
            key=lambda w: (
                str(w.mutations[0].module_path),
                w.mutations[0].operator_name,
                w.mutations[0].occurrence,
            ),
        )
        if n is not None and n < len(items):
            keep = {w.job_id for w in random.Random(seed).sample(items, n)}
            skip = [w.job_id for w in items if w.job_id not in keep]
            db.set_multiple_results(
                skip, WorkResult(output="not sampled", worker_outcome=WorkerOutcome.SKIPPED)
            )
        else:
            keep = {w.job_id for w in items}
        for w in items:
            m = w.mutations[0]
            outcome = known.get(f"{m.module_path}:{m.operator_name}:{m.occurrence}")
            if w.job_id in keep and outcome is not None:
                db.set_result(
                    w.job_id,
                    WorkResult(output=f"known:{outcome}", worker_outcome=WorkerOutcome.SKIPPED),
                )
        return len(items)


def read_results(db_path: Path) -> list[dict]:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome

    out = []
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            m = item.mutations[0]
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                if not (result.output or "").startswith("known:"):
                    continue
                outcome = result.output.removeprefix("known:")
            elif result.worker_outcome == WorkerOutcome.NORMAL:
                outcome = result.test_outcome.value
            else:
                outcome = result.worker_outcome.value
            failed = re.search(r"^(?:FAILED|ERROR) (\S+)", result.output or "", re.M)
            out.append(
                {
                    "id": f"{m.module_path}:{m.operator_name}:{m.occurrence}",
                    "line": m.start_pos[0],
                    "outcome": outcome,
                    "killed_by": failed.group(1) if failed and outcome == "killed" else "",
                    "diff": result.diff or "",
                }
            )
    return sorted(out, key=lambda r: (r["line"], r["id"]))


def pending(db_path: Path) -> int:
    from cosmic_ray.work_db import WorkDB, use_db

    with use_db(str(db_path), WorkDB.Mode.open) as db:
        return sum(1 for _ in db.pending_work_items)


def run_module(
    tmp: Path,
    module: str,
    tests: str,
    n: int | None,
    seed: int,
    timeout: float,
    known: dict[str, str],
) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tmp / "src")}
    stem = module.replace("/", "_").removesuffix(".py")
    cfg, db = tmp / f"{stem}.toml", tmp / f"{stem}.sqlite"
    write_config(cfg, module, tests, timeout)
    cosmic(["init", str(cfg), str(db)], tmp, env)
    total = sample_mutants(db, n, seed, known)
    start = time.monotonic()
    if pending(db):
        # The unmutated tree must pass, or every mutant would count as killed.
        subprocess.run(test_command(tests).split(), cwd=tmp, env=env, check=True)
        cosmic(["exec", str(cfg), str(db)], tmp, env)
    results = read_results(db)
    tested = [r for r in results if r["outcome"] in ("killed", "survived")]
    killed = sum(r["outcome"] == "killed" for r in tested)
    return {
        "module": module,
        "tests": tests,
        "mutants": total,
        "tested": len(tested),
        "killed": killed,
        "score": killed / len(tested) if tested else None,
        "seconds": round(time.monotonic() - start),
        "results": results,
    }


def write_report(
    out: Path, runs: list[dict], args: argparse.Namespace, fates: dict, earlier: set[str]
) -> None:
    survivors = [r for run in runs for r in run["results"] if r["outcome"] == "survived"]
    now_killed = [
        r for run in runs for r in run["results"] if r["id"] in earlier and r["outcome"] == "killed"
    ]
    equivalent = sum(fates.get(r["id"], "").startswith("equivalent") for r in survivors)
    tested = sum(run["tested"] for run in runs)
    killed = sum(run["killed"] for run in runs)
    summary = {
        "tool": "cosmic-ray",
        "sample_per_module": args.sample,
        "seed": args.seed,
        "tested": tested,
        "killed": killed,
        "equivalent": equivalent,
        "score_non_equivalent": killed / (tested - equivalent) if tested > equivalent else None,
        "modules": [{k: v for k, v in run.items() if k != "results"} for run in runs],
        "survivors": [{**r, "fate": fates.get(r["id"], "")} for r in survivors],
        "killed_by_new_tests": now_killed,
        "killed_ids": [
            {"id": r["id"]} for run in runs for r in run["results"] if r["outcome"] == "killed"
        ],
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    tmp.replace(out.with_suffix(".json"))
    how = (
        "every mutant"
        if args.sample is None
        else f"a fixed sample of {args.sample} mutants per module drawn with seed {args.seed}"
        " (the attacks/ folder counting as one) from cosmic-ray's full list sorted by"
        " (file, operator, occurrence)"
    )
    total = sum(run["mutants"] for run in runs)
    lines = [
        "# Mutation testing (cosmic-ray)",
        "",
        f"`python scripts/mutation.py` on {how}; each mutant is tested with the test files of "
        "its package that exercise it (`pytest -x`, listed in the script). Seconds are this "
        "run's: mutants an earlier run on the same source settled (`--keep-killed`) are not run "
        "again.",
        "",
        (
            f"**This is a sample**: {tested} of the {total} mutants cosmic-ray makes of these "
            "modules. `make mutation` runs all of them (hours on two cores)."
            if args.sample is not None
            else f"All {total} mutants."
        ),
        "",
        "| module | mutants | tested | killed | score | seconds | tests |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in runs:
        score = "-" if run["score"] is None else f"{run['score']:.0%}"
        lines.append(
            f"| {run['module']} | {run['mutants']} | {run['tested']} | {run['killed']} "
            f"| {score} | {run['seconds']} | {run['tests']} |"
        )
    score = summary["score_non_equivalent"]
    lines += [
        "",
        f"Killed {killed} of {tested}; {equivalent} survivors are equivalent; score on the "
        f"non-equivalent mutants: {'-' if score is None else f'{score:.1%}'}.",
        "",
        "## Survivors",
        "",
    ]
    for r in survivors:
        lines += [f"- `{r['id']}` (line {r['line']}): {fates.get(r['id'], 'NOT EXPLAINED')}"]
        lines += ["", "```diff", r["diff"].strip(), "```", ""]
    if now_killed:
        lines += [
            "## Survivors of the first run, killed since",
            "",
            "Each survived the first run, and fails the test named now: a test written for it, "
            "or one of its package that the first run's test set left out (test_ddp.py, "
            "test_distributed.py).",
            "",
        ]
        for r in now_killed:
            lines += [f"- `{r['id']}` (line {r['line']}): killed by `{r['killed_by']}`"]
            lines += ["", "```diff", r["diff"].strip(), "```", ""]
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out.with_suffix(".md"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sample", type=int, default=None, help="mutants per module (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modules", nargs="*", default=None, help="subset of the modules")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant's tests")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/mutation")
    p.add_argument(
        "--keep-killed",
        type=Path,
        default=None,
        help="an earlier NAME.json on the same source: its killed mutants are not run again "
        "(tests are only added, so they stay killed); its survivors are",
    )
    p.add_argument(
        "--tests-for",
        action="append",
        default=[],
        metavar="MODULE=TESTS",
        help="run these tests (space-separated) on MODULE's mutants instead of its default",
    )
    args = p.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.tests_for)
    fates_path = ROOT / "scripts/mutation_fates.json"
    fates = json.loads(fates_path.read_text()) if fates_path.exists() else {}
    known: dict[str, str] = {}
    earlier: set[str] = set()
    diffs: dict[str, str] = {}
    killers: dict[str, str] = {}
    if args.keep_killed:
        prev = json.loads(args.keep_killed.read_text())
        carried = prev.get("survivors", []) + prev.get("killed_by_new_tests", [])
        diffs = {r["id"]: r["diff"] for r in carried}
        killers = {r["id"]: r.get("killed_by", "") for r in carried}
        known = {r["id"]: "killed" for r in prev.get("killed_ids", [])}
        earlier = {r["id"] for r in prev.get("survivors", [])}
        # Survivors explained as equivalent survive any test: not run again.
        known |= {i: "survived" for i in earlier if fates.get(i, "").startswith("equivalent")}
        earlier |= {r["id"] for r in prev.get("killed_by_new_tests", [])}
    modules = {m: overrides.get(m, MODULES[m]) for m in (args.modules or MODULES)}
    # A run started in the background inherits an ignored SIGINT; the tests expect Python's.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    runs = []
    for module, tests in modules.items():
        with tempfile.TemporaryDirectory(prefix="advscale-mutation-") as d:
            tmp = Path(d)
            copy_tree(tmp)
            run = run_module(tmp, module, tests, args.sample, args.seed, args.timeout, known)
        for r in run["results"]:  # mutants not run again keep the earlier run's diff
            r["diff"] = r["diff"] or diffs.get(r["id"], "")
            r["killed_by"] = r["killed_by"] or killers.get(r["id"], "")
        print(f"{module}: {run['killed']}/{run['tested']} killed", flush=True)
        runs.append(run)
        write_report(args.out, runs, args, fates, earlier)
    return 0


if __name__ == "__main__":
    sys.exit(main())
