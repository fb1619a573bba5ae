"""``advscale eval``: robust accuracy of one model under attacks over a list of ε."""

from __future__ import annotations

import argparse
from pathlib import Path

from advscale.commands import eps_list, name_list, positive_n


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--split", default="test")
    p.add_argument(
        "--attacks",
        type=name_list,
        default=["fgsm", "step_ll", "iter_basic", "iter_ll", "pgd", "apgd"],
    )
    p.add_argument(
        "--eps",
        type=eps_list,
        default=[2, 4, 8, 16],
        help="pixel levels, e.g. 2,4,8,16 (8 means 8/255)",
    )
    p.add_argument(
        "--n", type=int, default=1000, help="number of test examples (stratified subset)"
    )
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument(
        "--cascade", action="store_true", help="later attacks run only on points still robust"
    )
    p.add_argument(
        "--preset",
        choices=["custom", "strong"],
        default="custom",
        help="strong: APGD-CE, APGD-T, Square as a cascade (overrides --attacks)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--apgd-steps", type=int, default=None, help="iterations of the APGD attacks (default 100)"
    )
    p.add_argument(
        "--no-unbounded-check",
        action="store_true",
        help="skip the PGD check at eps=255/255 that an unbounded attack reaches ~0%%",
    )
    p.add_argument(
        "--no-fuse",
        action="store_true",
        help="attack the model as loaded, not a copy with batch norm folded (slower, same numbers)",
    )
    p.add_argument("--out", type=Path, default=Path("results.json"))
    p.add_argument(
        "--save-adv",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep up to 8 broken examples per attack × ε: DIR/examples.safetensors (x, x_adv, "
        "y, pred, attack, eps) and DIR/examples.png; the report shows them",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table and the gradient-masking verdict, save the results."""
    from advscale.errors import UserError
    from advscale.evaluate import evaluate_spec
    from advscale.report.text import format_table, format_warnings
    from advscale.utils import check_writable

    positive_n(args.n)
    check_writable(args.out, "--out")
    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    if args.apgd_steps is not None and args.apgd_steps < 1:
        raise UserError(f"--apgd-steps must be >= 1, got {args.apgd_steps}")
    results = evaluate_spec(
        args.model,
        data=args.data,
        split=args.split,
        data_dir=args.data_dir,
        n=args.n,
        attacks=args.attacks,
        eps=args.eps,
        batch_size=args.batch_size,
        cascade=args.cascade,
        preset=args.preset,
        apgd_steps=args.apgd_steps,
        device=args.device,
        seed=args.seed,
        check_unbounded=not args.no_unbounded_check,
        fuse=not args.no_fuse,
        trust=args.trust_checkpoint,
        save_adv=args.save_adv,
    )
    s = results.summary
    print(
        f"{args.model} on {args.data}/{args.split}, n={s['n']}, clean accuracy "
        f"{100 * s['clean_accuracy']:.1f}%" + (", cascade" if results.config.get("cascade") else "")
    )
    print(results.config["class_order"])
    print(format_table(results.records))
    if s["warnings"]:
        print(format_warnings(s["warnings"]))
    else:
        print(f"gradient-masking checks passed: {', '.join(s['checks'])}")
    print(f"wrote {results.save(args.out)}")
    if "adversarial_examples" in results.config:
        from advscale.report import write_gallery_png

        saved = Path(results.config["adversarial_examples"])
        png = write_gallery_png(saved, saved.with_suffix(".png"))
        print(f"wrote {saved}" + (f", {png}" if png else " (no attack broke any example)"))
    return 0
