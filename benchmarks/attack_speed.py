"""PGD-10 speed of advscale against torchattacks, Foolbox 3, ART and a hand-written loop.

One model, one batch, one budget (L∞ ε=8/255, step α=2/255, 10 steps, random start) for all,
in two tasks:

(a) robust-accuracy evaluation: adversarial examples plus the verdict "still correct?" for each
    image. advscale runs its product path, ``advscale.evaluate.evaluate`` (clean pass, attacks
    only the correctly classified images, early stopping: an example that some iterate already
    fooled is not attacked further, on a copy of the model with batch norm folded; all of it
    inside the timed call); the row "advscale PGD.run" is the attack alone on the model as
    given (early stopping only). The peers generate, then one forward pass classifies.
(b) raw generation of adversarial examples, as adversarial training needs them: advscale
    ``PGD.perturb`` (final iterates, no bookkeeping), the peers' generation call.

Throughput is images per second, the median over ``--reps`` repetitions, timed round-robin
(every method once per repetition, after a warm-up) so that a change of machine load hits all
methods alike; a speedup is the median over repetitions of the per-repetition time ratio. Robust accuracy = correct on the clean image and on the adversarial one.

Targets: (a) advscale ≥ 2× torchattacks' throughput at a robust accuracy no higher than its
(mean over repetitions, within two standard errors: each repetition draws other random starts);
(b) advscale within 5% of the hand-written loop.

Usage:
    python benchmarks/attack_speed.py                 # trains a small_cnn for ~10 s first
    python benchmarks/attack_speed.py --model runs/x/model.safetensors --n 1024
Writes benchmarks/results/attack_speed.{json,md} (``--out`` to change).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Collection
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import add_model_args, classifier_for, fashion_mnist, save_results
from torch import Tensor, nn
from torch.nn import functional as F

from advscale.attacks import PGD
from advscale.evaluate import evaluate
from advscale.models import load_model
from advscale.utils import environment_info, resolve_device

EPS, ALPHA, STEPS = 8 / 255, 2 / 255, 10
TARGET_EVAL_SPEEDUP = 2.0  # (a) against torchattacks
TARGET_GEN_SLOWDOWN = 0.05  # (b) against the hand-written loop
ROOT = Path(__file__).resolve().parents[1]
METHODS = ("advscale", "advscale PGD.run", "hand-written", "torchattacks", "foolbox", "art")


# -- the model ---------------------------------------------------------------------------------
def train_model(args: argparse.Namespace, device: torch.device) -> nn.Module:
    """A standard (not adversarially) trained ``args.arch`` on a Fashion-MNIST subset."""
    torch.manual_seed(0)
    data = fashion_mnist("train", args.n_train, 0, args.cifar_shaped)
    x, y = data.tensors(device)
    model = classifier_for(args.arch, data, args.width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(args.epochs):
        perm = torch.randperm(len(x)).to(device)
        for i in range(0, len(x), 64):
            b = perm[i : i + 64]
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


# -- the hand-written reference ------------------------------------------------------------------
def handwritten_pgd(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The minimal PGD loop one would write by hand: random start, sign step, clip, clip."""
    delta = (torch.rand_like(x) * 2 - 1) * EPS
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(STEPS):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + ALPHA * grad.sign()).clamp(-EPS, EPS)
        delta = (x + delta).clamp(0, 1) - x
    return x + delta


def predict(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


# -- the methods: each returns (generate, evaluate) over one batch ---------------------------------
Method = dict[str, Callable[[Tensor, Tensor], Tensor]]
# Passes advscale's early-stopping evaluation made; the peers make STEPS + 1 forward and STEPS
# backward passes per image, so the ratio bounds the speedup early stopping can give.
PASSES = {"forward": 0, "backward": 0, "images": 0}


def methods(
    model: nn.Module,
    batch_size: int,
    device: torch.device,
    only: Collection[str] | None = None,
    x_shape: tuple[int, ...] = (1, 28, 28),
) -> dict[str, Method]:
    """Per method: ``gen(x, y) -> x_adv`` and ``eval(x, y) -> still_correct (N,) bool``
    (a method without ``gen`` is timed in (a) only).

    ``only``: the methods to build besides "advscale", which is always built (the speedups are
    relative to it); None: all of ``METHODS``. A peer's library is imported only when its
    method is built, so a missing peer matters only when asked for.
    """
    out: dict[str, Method] = {}

    def wanted(name: str) -> bool:
        return only is None or name in only

    ours = PGD(model, EPS, steps=STEPS, alpha=ALPHA)

    def ours_eval(x: Tensor, y: Tensor) -> Tensor:
        report = evaluate(
            model,
            (x, y),
            attacks=["pgd"],
            eps=[EPS * 255],
            batch_size=batch_size,
            seed=torch.initial_seed(),  # the repetition's seed, as the peers' global RNG gets
            device=device,
            attack_kwargs={"pgd": {"steps": STEPS, "alpha": ALPHA}},
            checks=False,
            progress=False,
        )
        (rec,) = [r for r in report.records if r["attack"] == "pgd"]
        PASSES["forward"] += rec["forward"]
        PASSES["backward"] += rec["backward"]
        PASSES["images"] += len(x)
        return report.robust_mask[("pgd", EPS * 255)].to(x.device)

    # evaluate() takes the whole set and batches it itself, as ART does.
    out["advscale"] = {"gen": ours.perturb, "eval": ours_eval}
    if wanted("advscale PGD.run"):
        out["advscale PGD.run"] = {"eval": lambda x, y: ~ours.run(x, y).fooled}
    if wanted("hand-written"):
        out["hand-written"] = {
            "gen": lambda x, y: handwritten_pgd(model, x, y),
            "eval": lambda x, y: predict(model, handwritten_pgd(model, x, y)) == y,
        }
    if wanted("torchattacks"):
        out["torchattacks"] = torchattacks_method(model)
    if wanted("foolbox"):
        out["foolbox"] = foolbox_method(model)
    if wanted("art"):
        out["art"] = art_method(model, batch_size, device, x_shape)
    return out


def torchattacks_method(model: nn.Module) -> Method:
    import torchattacks

    ta = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=True)
    return {"gen": ta, "eval": lambda x, y: predict(model, ta(x, y)) == y}


def foolbox_method(model: nn.Module) -> Method:
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    fpgd = fb.attacks.LinfPGD(rel_stepsize=ALPHA / EPS, steps=STEPS, random_start=True)
    return {
        # ``run`` is the generation alone; ``__call__`` adds the success check (one forward).
        "gen": lambda x, y: fpgd.run(fmodel, x, y, epsilon=EPS),
        "eval": lambda x, y: ~fpgd(fmodel, x, y, epsilons=EPS)[2],
    }


def art_method(
    model: nn.Module, batch_size: int, device: torch.device, x_shape: tuple[int, ...]
) -> Method:
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = PyTorchClassifier(
            model,
            loss=nn.CrossEntropyLoss(),
            input_shape=tuple(x_shape),
            nb_classes=10,
            clip_values=(0.0, 1.0),
            device_type="gpu" if device.type == "cuda" else "cpu",
        )
    art_pgd = ProjectedGradientDescentPyTorch(
        clf,
        norm=np.inf,
        eps=EPS,
        eps_step=ALPHA,
        max_iter=STEPS,
        num_random_init=1,
        batch_size=batch_size,
        verbose=False,
    )

    def art_gen(x: Tensor, y: Tensor) -> Tensor:
        adv = art_pgd.generate(x.cpu().numpy(), y=y.cpu().numpy())
        return torch.from_numpy(adv).to(x.device)

    return {"gen": art_gen, "eval": lambda x, y: predict(model, art_gen(x, y)) == y}


def robust_difference(ours: list[float], theirs: list[float]) -> dict[str, Any]:
    """advscale's robust accuracy minus a peer's, mean over repetitions, and its standard error.

    Each repetition draws other random starts (advscale seeds per batch, the peers share the
    global generator), so equal attacks differ by a few images per repetition. "Not higher"
    means a difference within two standard errors (with one repetition: not higher at all).
    """
    n = len(ours)
    diff = statistics.fmean(ours) - statistics.fmean(theirs)
    se = (
        math.sqrt(statistics.variance(ours) / n + statistics.variance(theirs) / n) if n > 1 else 0.0
    )
    return {"difference": diff, "standard_error": se, "not_higher": diff <= 2 * se}


def timed(
    fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, batch_size: int
) -> tuple[float, Tensor]:
    """Seconds for ``fn`` over all batches, and the concatenated outputs."""
    outs = []
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for i in range(0, len(x), batch_size):
        outs.append(fn(x[i : i + batch_size], y[i : i + batch_size]).detach())
    sync()
    return time.perf_counter() - t0, torch.cat(outs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--model", type=Path, help="checkpoint (load_model); default: train one in the script"
    )
    p.add_argument("--n-train", type=int, default=6000, help="training images when training here")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--width", type=float, default=0.5, help="channel width multiplier")
    add_model_args(p)
    p.add_argument("--n", type=int, default=1024, help="test images attacked per repetition")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--only",
        nargs="*",
        choices=METHODS,
        metavar="METHOD",
        help=f"methods to run besides advscale (default: all): {', '.join(METHODS)}",
    )
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "attack_speed")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    device = resolve_device(args.device)
    model = load_model(args.model) if args.model else train_model(args, device)
    train_s = time.perf_counter() - t0
    model = model.eval().to(device)
    x, y = fashion_mnist("test", args.n, 1, args.cifar_shaped).tensors(device)
    clean = predict(model, x) == y
    print(
        f"model ready in {train_s:.1f}s, clean accuracy {clean.float().mean():.3f}", file=sys.stderr
    )

    ms = methods(model, args.batch_size, device, args.only or None, tuple(x.shape[1:]))
    tasks = ("eval", "gen")
    for m in ms.values():  # warm-up: allocator, kernels, lazy imports
        for task in m:
            m[task](x[:32], y[:32])

    times: dict[str, dict[str, list[float]]] = {k: {t: [] for t in m} for k, m in ms.items()}
    robust: dict[str, list[float]] = {k: [] for k in ms}
    for rep in range(args.reps):
        for task in tasks:
            for name, m in ms.items():
                if task not in m:
                    continue
                torch.manual_seed(rep)
                whole = name == "advscale" and task == "eval"  # batches inside evaluate()
                sec, out = timed(m[task], x, y, len(x) if whole else args.batch_size)
                times[name][task].append(sec)
                if task == "eval":
                    robust[name].append(float((clean & out).float().mean()))
        print(
            f"rep {rep + 1}/{args.reps}: "
            + ", ".join(
                f"{k} " + "/".join(f"{secs[-1]:.2f}s" for secs in v.values())
                for k, v in times.items()
            ),
            file=sys.stderr,
        )
    load_after = os.getloadavg()
    fwd, bwd = PASSES["forward"] / PASSES["images"], PASSES["backward"] / PASSES["images"]

    rows: dict[str, Any] = {}
    for name in ms:
        rows[name] = {
            task: {
                "images_per_s": args.n / statistics.median(secs),
                "seconds": secs,
            }
            for task, secs in times[name].items()
        }
        rows[name]["robust_accuracy"] = statistics.fmean(robust[name])
        rows[name]["robust_accuracy_reps"] = robust[name]
    ours = rows["advscale"]
    for r in rows.values():
        for task in tasks:
            if task in r:
                # Paired: the median over repetitions of the two methods' time ratio, so that a
                # change of machine load between repetitions cancels.
                r[task]["advscale_speedup"] = statistics.median(
                    t / t_ours
                    for t, t_ours in zip(r[task]["seconds"], ours[task]["seconds"], strict=True)
                )
    eval_ok = gen_ok = strength = None  # None: the peer was not measured (--only)
    if "torchattacks" in rows:
        strength = robust_difference(robust["advscale"], robust["torchattacks"])
        eval_ok = (
            rows["torchattacks"]["eval"]["advscale_speedup"] >= TARGET_EVAL_SPEEDUP
            and strength["not_higher"]
        )
    if "hand-written" in rows:
        gen_ok = rows["hand-written"]["gen"]["advscale_speedup"] >= 1 - TARGET_GEN_SLOWDOWN

    versions = {}
    for pkg in ("torchattacks", "foolbox", "adversarial-robustness-toolbox"):
        try:
            versions[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - a peer not installed is reported, not fatal
            versions[pkg] = None
    result = {
        "benchmark": "attack_speed",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment_info(device),
        "peer_versions": versions,
        "load_average_1_5_15": {"before": load_before, "after": load_after},
        "config": {
            "eps": EPS,
            "eps_levels": 8,
            "alpha": ALPHA,
            "steps": STEPS,
            "random_start": True,
            "n_images": args.n,
            "batch_size": args.batch_size,
            "reps": args.reps,
            "threads": args.threads,
            "model": str(args.model)
            if args.model
            else f"{args.arch} width {args.width}, trained here on {args.n_train} Fashion-MNIST "
            f"images{' (3x32x32: padded, grey repeated)' if args.cifar_shaped else ''}, "
            f"{args.epochs} epochs ({train_s:.1f}s)",
            "clean_accuracy": float(clean.float().mean()),
        },
        "methods": rows,
        "advscale_eval_passes_per_image": {
            "forward": fwd,
            "backward": bwd,
            "peers_forward": STEPS + 1,
            "peers_backward": STEPS,
        },
        "targets": {
            "eval_speedup_vs_torchattacks": TARGET_EVAL_SPEEDUP,
            "eval_met": eval_ok,
            "robust_accuracy_vs_torchattacks": strength,
            "gen_max_slowdown_vs_handwritten": TARGET_GEN_SLOWDOWN,
            "gen_met": gen_ok,
        },
    }
    save_results(args.out, result, markdown)
    return 0


def markdown(r: dict[str, Any]) -> str:
    env, cfg, t = r["environment"], r["config"], r["targets"]
    lb, la = r["load_average_1_5_15"]["before"], r["load_average_1_5_15"]["after"]
    where = (
        f"{env['gpu']} ({env['cpu_count']} CPU cores)"
        if str(env.get("device", "cpu")).startswith("cuda") and env.get("gpu")
        else f"{env['cpu']} · {env['cpu_count']} cores, {cfg['threads']} torch threads"
    )
    lines = [
        "# PGD-10 attack speed: advscale vs torchattacks, Foolbox, ART, hand-written loop",
        "",
        f"{r['date']} · {where} · "
        f"torch {env['torch']} · " + ", ".join(f"{k} {v}" for k, v in r["peer_versions"].items()),
        f"Load average (1 min) {lb[0]:.2f} before, {la[0]:.2f} after (shared machine).",
        "",
        f"L∞ ε={cfg['eps_levels']}/255, α=2/255, {cfg['steps']} steps, random start; {cfg['n_images']} "
        f"Fashion-MNIST test images in batches of {cfg['batch_size']}; {cfg['reps']} repetitions (images/s: the median). "
        f"Model: {cfg['model']}; clean accuracy {cfg['clean_accuracy']:.1%}.",
        "",
        "(a) robust-accuracy evaluation (advscale: `evaluate()`: clean pass, early stopping, "
        "batch norm folded; `PGD.run`: the attack alone with early stopping, on the model as "
        "given); (b) generation (advscale: `PGD.perturb`). Speedup = the method's time ÷ "
        "advscale's in the same repetition, median over repetitions.",
        "",
        "| method | (a) images/s | (a) advscale speedup | robust acc. | (b) images/s | (b) advscale speedup |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in r["methods"].items():
        gen = (
            f"{m['gen']['images_per_s']:.0f} | {m['gen']['advscale_speedup']:.2f}×"
            if "gen" in m
            else "— | —"
        )
        lines.append(
            f"| {name} | {m['eval']['images_per_s']:.0f} | {m['eval']['advscale_speedup']:.2f}× | "
            f"{m['robust_accuracy']:.2%} | {gen} |"
        )
    verdict = {True: "met", False: "MISSED", None: "not measured"}
    ps = r["advscale_eval_passes_per_image"]
    lines += [
        "",
        f"Passes per image in (a): advscale {ps['forward']:.2f} forward + {ps['backward']:.2f} backward "
        f"(clean pass and final check not included), the others {ps['peers_forward']} + "
        f"{ps['peers_backward']}. Early stopping can only save the passes of examples broken "
        f"before the last step (examples that stay robust need every step); folding batch norm "
        f"makes every pass cheaper.",
        "",
        robust_line(t.get("robust_accuracy_vs_torchattacks")),
        "",
        f"Target (a) ≥ {t['eval_speedup_vs_torchattacks']:g}× torchattacks at no higher robust accuracy: "
        f"**{verdict[t['eval_met']]}**. Target (b) within {t['gen_max_slowdown_vs_handwritten']:.0%} of the "
        f"hand-written loop: **{verdict[t['gen_met']]}**.",
        "",
    ]
    return "\n".join(lines)


def robust_line(s: dict[str, Any] | None) -> str:
    if not s:
        return "Robust accuracy against torchattacks: not measured."
    return (
        f"Robust accuracy is the mean over repetitions, each with its own random starts. advscale "
        f"minus torchattacks: {100 * s['difference']:+.2f} points (standard error "
        f"{100 * s['standard_error']:.2f}): "
        + (
            "not higher beyond random-start noise."
            if s["not_higher"]
            else "HIGHER: a weaker attack."
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
