"""``advscale eval``: robust accuracy of one model under attacks over a list of ε.

Under ``torchrun --nproc_per_node N -m advscale eval ...`` the processes share the attacks'
batches (:mod:`advscale.evaluate.distributed`); rank 0 prints and writes the results, which
equal a one-process run's.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from advscale.commands import name_list, positive_n

DEFAULT_ATTACKS = ["fgsm", "step_ll", "iter_basic", "iter_ll", "pgd", "apgd"]


def number_list(text: str) -> list[float]:
    """``--eps 2,4,8``: comma-separated numbers (their range is checked against ``--norm``)."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--eps must be comma-separated numbers, got {text!r}"
        ) from None


def attack_kwargs(text: str) -> dict[str, dict[str, Any]]:
    """``--attack-kwargs square.n_queries=1000,square.p_init=0.05``: ``ATTACK.ARG=VALUE`` items,
    comma-separated; values read as YAML (``100``, ``0.05``, ``true``, ``[1, 2]``, ``dlr``)."""
    from advscale.train.config import parse_value  # the one reading of command-line values

    out: dict[str, dict[str, Any]] = {}
    # Split only before the next ATTACK.ARG=, so that a list value may hold commas.
    for item in re.split(r",(?=\s*[\w-]+\.[\w-]+\s*=)", text):
        key, sep, value = item.partition("=")
        attack, dot, arg = key.strip().partition(".")
        if not (sep and dot and attack and arg):
            raise argparse.ArgumentTypeError(
                f"--attack-kwargs {item!r}: expected ATTACK.ARGUMENT=VALUE, e.g. square.n_queries=1000"
            )
        out.setdefault(attack, {})[arg.strip()] = parse_value(value.strip())
    return out


def norm_choice(text: str) -> str:
    """``--norm linf|l2``, case-blind, in any spelling advscale accepts (``Linf``, ``inf``, ``2``)."""
    from advscale.attacks import canonical_norm
    from advscale.errors import UserError

    try:
        return canonical_norm(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(f"--norm: {e}") from None


def target_choice(text: str) -> str | int:
    """``--target ll|random|CLASS``."""
    if text in ("ll", "random"):
        return text
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"--target must be ll, random or a class index, got {text!r}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from advscale.attacks import list_attacks
    from advscale.evaluate.robust import PRESETS

    p = sub.add_parser("eval", help="robust accuracy of a model under attacks over a list of ε")
    p.add_argument(
        "--model",
        required=True,
        help="advscale checkpoint (path without extension, or .safetensors/.json), a TorchScript "
        "file, timm:NAME@WEIGHTS, package.module:factory@WEIGHTS or a .yaml model spec",
    )
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow a model weights .pt/.pth that needs full unpickling (only for files you trust)",
    )
    p.add_argument("--data", default="fashion-mnist", help="dataset name")
    p.add_argument("--data-dir", type=Path, default=None, help="where the dataset's files are")
    p.add_argument("--split", default="test", help="dataset split")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        metavar="PIXELS",
        help="evaluate at this size: resize the short side (to --eval-resize, default this "
        "size), then centre-crop a square; default: the model's input size, resized",
    )
    p.add_argument(
        "--eval-resize",
        type=int,
        default=None,
        metavar="PIXELS",
        help="short side to resize to before the --image-size centre crop, e.g. 256 for 224",
    )
    p.add_argument(
        "--attacks",
        type=name_list,
        default=DEFAULT_ATTACKS,
        metavar="A,B,...",
        help=f"comma-separated attacks, run in this order; from: {', '.join(list_attacks())}",
    )
    p.add_argument(
        "--norm",
        type=norm_choice,
        metavar="linf|l2",
        default="linf",
        help="the norm ε is measured in; L2 attacks: pgd, apgd_ce, apgd_t, square",
    )
    p.add_argument(
        "--eps",
        type=number_list,
        default=None,
        help="budgets; L∞: pixel levels, e.g. 2,4,8,16 (8 means 8/255; default 2,4,8,16); "
        "L2: radii in [0, 1] units of the image, no /255, e.g. 0.25,0.5 (required)",
    )
    p.add_argument(
        "--attack-kwargs",
        type=attack_kwargs,
        action="append",
        default=[],
        metavar="ATTACK.ARG=VALUE,...",
        help="arguments of single attacks, e.g. square.n_queries=1000,square.p_init=0.05 or "
        "pgd.steps=20 (repeatable)",
    )
    p.add_argument(
        "--target",
        type=target_choice,
        default=None,
        metavar="ll|random|CLASS",
        help="make every attack targeted: the least-likely class, a random other class, or a "
        "class index (default: untargeted)",
    )
    p.add_argument(
        "--n",
        "--examples",
        dest="n",
        type=int,
        default=1000,
        help="number of test examples (stratified subset); under torchrun spell it --examples "
        "(torchrun reads --n as its own --nnodes/--nproc-per-node)",
    )
    p.add_argument("--batch-size", type=int, default=500, help="examples per attack call")
    p.add_argument(
        "--cascade", action="store_true", help="later attacks run only on points still robust"
    )
    p.add_argument(
        "--preset",
        choices=["custom", *PRESETS],
        default="custom",
        help="strong: APGD-CE, APGD-T, FAB-T (L2 only), Square as a cascade; autoattack: the reference "
        "AutoAttack, standard version (pip install advscale[autoattack]); both override "
        "--attacks",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed of the attacks' random draws")
    p.add_argument(
        "--apgd-steps", type=int, default=None, help="iterations of the APGD attacks (default 100)"
    )
    p.add_argument(
        "--no-unbounded-check",
        action="store_true",
        help="skip the PGD check at eps=255/255 that an unbounded attack reaches ~0%%",
    )
    p.add_argument(
        "--eot",
        type=int,
        default=1,
        metavar="N",
        help="attack the mean of N forward passes (expectation over transformation), for a "
        "model that is not deterministic: dropout left on, random input noise (default 1)",
    )
    p.add_argument(
        "--no-fuse",
        action="store_true",
        help="attack the model as loaded, not a copy with batch norm folded (slower, same numbers)",
    )
    p.add_argument("--out", type=Path, default=Path("results.json"), help="results file")
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite an existing results file (and the examples in --save-adv)",
    )
    p.add_argument(
        "--save-adv",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep up to 8 broken examples per attack × ε: DIR/examples.safetensors (x, x_adv, "
        "y, pred, attack, eps) and DIR/examples.png; the report shows them",
    )
    p.set_defaults(handler=run)


def image_sizes(image_size: int | None, eval_resize: int | None) -> dict[str, int]:
    """``--image-size``/``--eval-resize`` as ``evaluate_spec`` arguments; sizes checked."""
    from advscale.errors import UserError

    for flag, v in (("--image-size", image_size), ("--eval-resize", eval_resize)):
        if v is not None and not 4 <= v <= 4096:
            raise UserError(f"{flag} must be between 4 and 4096 pixels, got {v}")
    if eval_resize is not None and image_size is None:
        raise UserError("--eval-resize needs --image-size (the centre crop), e.g. 256 with 224")
    if image_size is None:
        return {}
    if eval_resize is not None and eval_resize < image_size:
        raise UserError(
            f"--eval-resize {eval_resize} is smaller than --image-size {image_size}: the centre "
            "crop would not fit"
        )
    return {"image_size": image_size, "eval_resize": eval_resize or image_size}


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table and the gradient-masking verdict, save the results."""
    from advscale.errors import UserError
    from advscale.evaluate import Shard, evaluate_spec
    from advscale.evaluate.norms import check_eps
    from advscale.report.text import format_table, format_warnings
    from advscale.train.distributed import init_distributed, shutdown
    from advscale.utils import check_writable

    positive_n(args.n)
    sizes = image_sizes(args.image_size, args.eval_resize)
    check_writable(args.out, "--out")
    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    if args.eot < 1:
        raise UserError(f"--eot must be a number of samples >= 1, got {args.eot}")
    if args.apgd_steps is not None and args.apgd_steps < 1:
        raise UserError(f"--apgd-steps must be >= 1, got {args.apgd_steps}")
    if args.eps is None and args.norm == "l2":
        raise UserError("--norm l2 needs --eps: L2 radii in [0, 1] units, e.g. --eps 0.25,0.5")
    eps = check_eps([2, 4, 8, 16] if args.eps is None else args.eps, "--eps", norm=args.norm)
    kwargs: dict[str, dict[str, Any]] = {}
    for given in args.attack_kwargs:
        for attack, kw in given.items():
            kwargs[attack] = {**kwargs.get(attack, {}), **kw}
    out = Path(args.out)
    if out.exists() and not args.force:  # every process decides alike: none waits for another
        raise UserError(f"{out} already exists; pass --force to overwrite it, or another --out")
    if args.save_adv is not None:
        _check_save_adv(args.save_adv, args.force)

    info = init_distributed(args.device)
    try:
        results = evaluate_spec(
            args.model,
            data=args.data,
            split=args.split,
            data_dir=args.data_dir,
            n=args.n,
            attacks=args.attacks,
            eps=eps,
            batch_size=args.batch_size,
            cascade=args.cascade,
            preset=args.preset,
            apgd_steps=args.apgd_steps,
            device=info.device,
            seed=args.seed,
            check_unbounded=not args.no_unbounded_check,
            fuse=not args.no_fuse,
            trust=args.trust_checkpoint,
            save_adv=args.save_adv,
            norm=args.norm,
            attack_kwargs=kwargs,
            target=args.target,
            shard=Shard.from_process_group(info.device),
            **sizes,
            eot=args.eot,
        )
    finally:
        shutdown(info)
    if not info.is_main:
        return 0
    s = results.summary
    print(
        f"{args.model} on {args.data}/{args.split}, n={s['n']}, clean accuracy "
        f"{100 * s['clean_accuracy']:.1f}%"
        + (", cascade" if results.config.get("cascade") else "")
        + (f", {info.world_size} processes" if info.enabled else "")
    )
    print(results.config["class_order"])
    print(format_table(results.records))
    if s["warnings"]:
        print(format_warnings(s["warnings"]))
    else:
        print(f"gradient-masking checks passed: {', '.join(s['checks'])}")
    print(f"wrote {results.save(out)}")
    if "adversarial_examples" in results.config:
        from advscale.report import write_gallery_png

        saved = Path(results.config["adversarial_examples"])
        png = write_gallery_png(saved, saved.with_suffix(".png"))
        print(f"wrote {saved}" + (f", {png}" if png else " (no attack broke any example)"))
    return 0


def _check_save_adv(folder: Path, force: bool) -> None:
    """Before any work: ``--save-adv`` must be a directory advscale can write, holding no
    examples of another evaluation unless ``force`` (a report would show them as this one's)."""
    from advscale.errors import UserError
    from advscale.evaluate.examples import FILE_NAME
    from advscale.utils import check_writable

    check_writable(folder, "--save-adv", directory=True)
    written = [folder / n for n in (FILE_NAME, Path(FILE_NAME).with_suffix(".png").name)]
    for path in written:  # a link or a device there is refused now, not after the work
        check_writable(path, "--save-adv")
    held = [p for p in written if os.path.lexists(p)]
    if held and not force:
        raise UserError(
            f"--save-adv {folder}: already holds examples ({held[0].name}); pass --force to "
            "replace them, or another directory"
        )
