"""advscale's ``strong`` preset against the reference AutoAttack (pyautoattack, "standard").

Three small_cnn models on Fashion-MNIST, trained here (or read from ``--models-dir`` when a
previous run left them there): an undefended one, one trained with Kurakin et al.'s step l.l.
recipe (half of each batch adversarial, per-example random ε) and one trained with PGD (Madry
et al.). Each is attacked at L∞ ε = 0.1 on the same ``--n`` test images by

* the reference: ``advscale.attacks.reference.AutoAttack`` — pyautoattack's
  ``AutoAttack(version="standard")``: APGD-CE, APGD-T (9 targets), FAB-T (9 targets),
  Square (5000 queries), as a cascade;
* advscale's ``strong`` preset (:class:`advscale.attacks.StrongCascade`), called directly
  (``evaluate`` runs the same object under ``--preset strong``).

Both run on the model wrapped in :class:`advscale.attacks.PassCounter`, which counts images
passed forward and backward; wall time is measured around each call.

Target per model: robust accuracy at most 0.2 points above the reference's, at most 1/4 of its
wall time and at most 1/4 of its forward + backward passes.

The reference is slow on a CPU, so its result (robust mask, time, passes, machine load) is kept
in ``--models-dir`` beside the model and reused while model, images, ε and seed are unchanged;
``--fresh-reference`` recomputes it. The JSON says when each reference result was measured.

Usage:
    python benchmarks/autoattack_compare.py                # trains the models first (~3 min)
    python benchmarks/autoattack_compare.py --n 500 --only pgd
Writes benchmarks/results/autoattack_compare.{json,md} (``--out`` to change).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from _common import add_model_args, classifier_for, fashion_mnist, save_results, sync
from torch import Tensor, nn
from torch.nn import functional as F

from advscale.attacks import PGD, AutoAttack, PassCounter, StepLL, StrongCascade
from advscale.models import load_model, save_model
from advscale.models.checkpoint import checkpoint_paths
from advscale.utils import atomic_write_json, environment_info, resolve_device

MAX_GAP_POINTS = 0.2
MAX_COST_FRACTION = 0.25
KINDS = ("undefended", "kurakin_step_ll", "pgd")
ROOT = Path(__file__).resolve().parents[1]


def train(kind: str, args: argparse.Namespace, device: torch.device) -> nn.Module:
    """``args.arch`` trained with Adam (lr 3e-3, batch 64) by recipe ``kind``.

    ``kurakin_step_ll``: half of each batch replaced by step l.l. examples with ε drawn per
    example uniformly from [0, 1.25 ε] (paper A's mixed batches, random ε); ``pgd``: every batch
    replaced by PGD-3 examples (α = 2.5 ε / 3) from ``perturb``.
    """
    torch.manual_seed(args.seed)
    data = fashion_mnist("train", args.n_train, args.seed, args.cifar_shaped)
    x, y = data.tensors(device)
    model = classifier_for(args.arch, data, args.width).to(device)
    eps, seed = args.eps, args.seed
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    step_ll = StepLL(model, eps, seed=seed)
    pgd = PGD(model, eps, steps=3, seed=seed)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x)).to(device)
        for i in range(0, len(x), 64):
            xb, yb = x[perm[i : i + 64]], y[perm[i : i + 64]]
            if kind == "kurakin_step_ll":
                h = len(xb) // 2
                e = torch.rand(len(xb) - h).to(device) * 1.25 * eps
                xb = torch.cat([xb[:h], step_ll.perturb(xb[h:], yb[h:], eps=e)])
            elif kind == "pgd":
                xb = pgd.perturb(xb, yb)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        print(f"{kind}: epoch {epoch + 1}/{args.epochs}, loss {loss.item():.3f}", file=sys.stderr)
    return model.eval()


def get_model(
    kind: str, args: argparse.Namespace, device: torch.device
) -> tuple[nn.Module, str, str]:
    """The model of ``kind`` (trained now or read back), how it was made, and its weights' SHA-256."""
    path = args.models_dir / kind
    if not checkpoint_paths(path)[0].exists():
        t0 = time.perf_counter()
        net = train(kind, args, device)
        origin = (
            f"{args.arch} width {args.width}, {kind} training at L∞ ε = {args.eps:g}, "
            f"{args.n_train} Fashion-MNIST images{' as 3x32x32' if args.cifar_shaped else ''}, "
            f"{args.epochs} epochs on {device.type} "
            f"({time.perf_counter() - t0:.0f} s)"
        )
        save_model(net, path, origin=origin)
    net = load_model(path).to(device)
    sha = hashlib.sha256(checkpoint_paths(path)[0].read_bytes()).hexdigest()
    return net.eval(), net.meta["origin"], sha


def timed(attack_cls: type, model: nn.Module, x: Tensor, y: Tensor, eps: float, seed: int, **kw):
    """Run ``attack_cls`` on the counted model; robust mask, seconds, forward and backward."""
    counted = PassCounter(model).eval()
    load = os.getloadavg()
    sync(x.device)
    t0 = time.perf_counter()
    attack = attack_cls(counted, eps, seed=seed, **kw)
    result = attack.run(x, y)
    sync(x.device)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    robust = clean & ~result.fooled
    return {
        "robust_accuracy": float(robust.float().mean()),
        "seconds": seconds,
        "forward": counted.forward_count,
        "backward": counted.backward_count,
        "load_average_1min": {"before": load[0], "after": os.getloadavg()[0]},
        "robust": [int(i) for i in robust.nonzero().flatten()],
        "clean_accuracy": float(clean.float().mean()),
        "stages": getattr(attack, "stages", None),
    }


def reference(model, x, y, key: dict[str, Any], path: Path, fresh: bool) -> dict[str, Any]:
    if path.exists() and not fresh:
        kept = json.loads(path.read_text())
        if kept["key"] == key:
            print(f"  reference: kept result of {kept['date']}", file=sys.stderr)
            return kept
    print("  reference AutoAttack (standard) ...", file=sys.stderr)
    r = timed(AutoAttack, model, x, y, key["eps"], key["seed"], norm=key.get("norm", "linf"))
    r.update(key=key, date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    atomic_write_json(path, r)
    return r


def compare(kind: str, args: argparse.Namespace, x: Tensor, y: Tensor) -> dict[str, Any]:
    model, origin, sha = get_model(kind, args, x.device)
    print(f"{kind}: {origin}", file=sys.stderr)
    key = {"model_sha256": sha, "n": len(x), "eps": args.eps, "seed": args.seed}
    if args.norm != "linf":  # keys of L∞ results kept from before this option
        key["norm"] = args.norm
    ref = reference(
        model,
        x,
        y,
        key,
        args.models_dir / f"reference_{kind}{suffix(args)}.json",
        args.fresh_reference,
    )
    print(
        f"  reference: robust {ref['robust_accuracy']:.3f} in {ref['seconds']:.0f} s",
        file=sys.stderr,
    )
    if args.reference_only:
        return {"model": origin, "reference": ref}
    ours = timed(StrongCascade, model, x, y, args.eps, args.seed, norm=args.norm, progress=False)
    print(
        f"  strong preset: robust {ours['robust_accuracy']:.3f} in {ours['seconds']:.0f} s",
        file=sys.stderr,
    )
    r_ref, r_ours = set(ref["robust"]), set(ours["robust"])
    gap = 100 * (ours["robust_accuracy"] - ref["robust_accuracy"])
    time_frac = ours["seconds"] / ref["seconds"]
    pass_frac = (ours["forward"] + ours["backward"]) / (ref["forward"] + ref["backward"])
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": origin,
        "model_sha256": sha,
        "clean_accuracy": ours["clean_accuracy"],
        "reference": {k: v for k, v in ref.items() if k not in ("key", "clean_accuracy")},
        "strong_preset": {k: v for k, v in ours.items() if k != "clean_accuracy"},
        "broken_only_by_reference": sorted(r_ours - r_ref),
        "broken_only_by_strong_preset": sorted(r_ref - r_ours),
        "gap_points": gap,
        "time_fraction": time_frac,
        "pass_fraction": pass_frac,
        "met": gap <= MAX_GAP_POINTS
        and time_frac <= MAX_COST_FRACTION
        and pass_frac <= MAX_COST_FRACTION,
    }


def suffix(args: argparse.Namespace) -> str:
    return "" if args.norm == "linf" else f"_{args.norm}"


def images(args: argparse.Namespace) -> str:
    return "3x32x32: padded, grey repeated" if args.cifar_shaped else "1x28x28"


def kept_models(path: Path, fresh: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Models of an earlier results file at ``path`` that this run did not measure (``--only``),
    kept when that file measured the same images, ε and seed; each keeps its own date."""
    if not args.only or not path.exists():
        return {}
    old = json.loads(path.read_text())
    cfg = old.get("config", {})
    cfg = {"arch": "small_cnn", "images": "1x28x28", **cfg}  # files from before these keys
    cfg.setdefault("norm", "linf")
    same = [cfg.get(k) for k in ("norm", "eps", "n_images", "seed", "arch", "images")] == [
        args.norm,
        args.eps,
        args.n,
        args.seed,
        args.arch,
        images(args),
    ]
    if not same:
        print(f"  {path}: other images, ε or seed; its models are not kept", file=sys.stderr)
        return {}
    return {
        k: {"date": old["date"], **m} for k, m in old.get("models", {}).items() if k not in fresh
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models-dir", type=Path, default=ROOT / "runs" / "autoattack_compare")
    p.add_argument("--only", choices=KINDS, action="append", help="models to run (default all)")
    p.add_argument("--eps", type=float, default=0.1, help="budget in [0, 1] units (L∞ or L2)")
    p.add_argument("--norm", default="linf", choices=("linf", "l2"))
    p.add_argument("--n", type=int, default=500, help="test images")
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--width", type=float, default=0.5, help="channel width multiplier")
    add_model_args(p)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh-reference", action="store_true", help="rerun the reference")
    p.add_argument("--reference-only", action="store_true", help="only train and run the reference")
    p.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "autoattack_compare"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    x, y = fashion_mnist("test", args.n, 1, args.cifar_shaped).tensors(device)
    models = {kind: compare(kind, args, x, y) for kind in (args.only or KINDS)}
    if args.reference_only:
        return 0
    models = kept_models(args.out.with_suffix(".json"), models, args) | models
    models = {k: models[k] for k in KINDS if k in models}
    result = {
        "benchmark": "autoattack_compare",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment_info(str(device)),
        "peer_versions": {"pyautoattack": version("pyautoattack")},
        "config": {
            "eps": args.eps,
            "norm": args.norm,
            "n_images": args.n,
            "images": images(args),
            "arch": args.arch,
            "seed": args.seed,
            "threads": args.threads,
            "strong_preset": repr(StrongCascade(nn.Identity(), args.eps, norm=args.norm)),
        },
        "target": {
            "max_gap_points": MAX_GAP_POINTS,
            "max_time_fraction": MAX_COST_FRACTION,
            "max_pass_fraction": MAX_COST_FRACTION,
        },
        "models": models,
        "not_measured": [k for k in KINDS if k not in models],
        "met": all(m["met"] for m in models.values()),
    }
    save_results(args.out, result, markdown)
    return 0


def markdown(r: dict[str, Any]) -> str:
    env, cfg = r["environment"], r["config"]
    lines = [
        "# advscale `strong` preset vs the reference AutoAttack (pyautoattack, standard)",
        "",
        f"{r['date']} · {env.get('gpu', env['cpu'])} · {env['cpu_count']} cores, "
        f"{cfg['threads']} torch threads (shared machine) · torch {env['torch']} · pyautoattack {r['peer_versions']['pyautoattack']}",
        "",
        f"{'L2' if cfg['norm'] == 'l2' else 'L∞'} ε = {cfg['eps']:g} on {cfg['n_images']} Fashion-MNIST test images "
        f"({cfg.get('images', '1x28x28')}), {cfg.get('arch', 'small_cnn')}, seed {cfg['seed']}. "
        f"Preset: `{cfg['strong_preset']}`.",
        "",
        "| model | clean | reference robust | preset robust | gap (points) | time ref / preset (s) "
        "| passes ref / preset | time frac. | pass frac. | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for kind, m in r["models"].items():
        a, o = m["reference"], m["strong_preset"]
        lines.append(
            f"| {kind} | {m['clean_accuracy']:.1%} | {a['robust_accuracy']:.1%} | "
            f"{o['robust_accuracy']:.1%} | {m['gap_points']:+.1f} | {a['seconds']:.0f} / "
            f"{o['seconds']:.0f} | {a['forward'] + a['backward']:,} / "
            f"{o['forward'] + o['backward']:,} | {m['time_fraction']:.2f} | "
            f"{m['pass_fraction']:.2f} | {'met' if m['met'] else 'MISSED'} |"
        )
    lines += ["", "Points only one side broke (test-image indices):", ""]
    for kind, m in r["models"].items():
        lines.append(
            f"- {kind}: only the reference {m['broken_only_by_reference']}, "
            f"only the preset {m['broken_only_by_strong_preset']} "
            f"(reference measured {m['reference']['date']}, preset {m.get('date', r['date'])})"
        )
    t = r["target"]
    missing = r.get("not_measured") or []
    lines += [
        "",
        f"Target on every model: gap at most {t['max_gap_points']} points, time and passes at most "
        f"{t['max_time_fraction']:.0%} of the reference's: **{'met' if r['met'] else 'MISSED'}** "
        f"on the {len(r['models'])} model(s) above"
        + (f"; not measured in this file: {', '.join(missing)}." if missing else "."),
        "",
        "Times are wall-clock on a machine shared with other jobs (the load is in the JSON); "
        "the pass counts do not depend on it.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
