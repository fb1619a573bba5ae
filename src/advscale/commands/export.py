"""``advscale export``: write a model as torch.export, TorchScript or ONNX, to run without advscale."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def input_shape(text: str) -> tuple[int, int, int]:
    """``--input-shape 3,32,32``: channels, height, width."""
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise argparse.ArgumentTypeError(
            f"--input-shape must be C,H,W (three positive integers, e.g. 3,32,32), got {text!r}"
        )
    return dims  # type: ignore[return-value]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a model as torch.export (.pt2), TorchScript (.ts) or ONNX (.onnx)",
        description="Export a model, normalization included, so that it runs without advscale; "
        "the file is written only after it gives the model's logits on example images.",
    )
    p.add_argument(
        "model",
        help="advscale checkpoint (path without extension, or .safetensors/.json) or any "
        "model spec advscale eval --model takes",
    )
    p.add_argument(
        "--to",
        required=True,
        type=Path,
        help="output file; the suffix picks the format: .pt2, .ts or .onnx",
    )
    p.add_argument(
        "--data",
        default=None,
        help="dataset whose test images the export is checked on (default: the checkpoint's)",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="where the dataset's files are")
    p.add_argument(
        "--input-shape",
        type=input_shape,
        default=None,
        metavar="C,H,W",
        help="check on random images of this shape instead of a dataset's",
    )
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow a model weights .pt/.pth that needs full unpickling (only for files you trust)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load the model, pick example images, export, say what was written."""
    from advscale.errors import UserError
    from advscale.models import load_any_model
    from advscale.models.export import export_format, export_model
    from advscale.utils import check_writable

    export_format(args.to)  # a bad suffix is refused before anything loads
    check_writable(args.to, "--to")
    if args.to.exists() and not args.force:
        raise UserError(f"{args.to} already exists; pass --force to overwrite it")
    model = load_any_model(args.model, "cpu", trust=args.trust_checkpoint)
    example, source = _examples(args, getattr(model, "meta", None) or {})
    done = export_model(model, args.to, example)
    checked = (
        f"logits match on {source} (max difference {done.max_abs_diff:.2g})"
        if done.max_abs_diff is not None
        else "not run here (pip install onnxruntime to check its logits)"
    )
    print(f"wrote {done.path} ({done.format}); {checked}")
    return 0


def _examples(args: argparse.Namespace, meta: dict) -> tuple[Any, str]:
    """Example images and what they are: ``--input-shape``'s random images, ``--data``'s test
    images, else those of the dataset the checkpoint records (as it was trained on: resized,
    converted), else random images of the shape it records."""
    import torch

    from advscale.data import DATASETS, load_dataset
    from advscale.errors import UserError

    shape = args.input_shape
    data, data_dir, kw = args.data, args.data_dir, {}
    if shape is None and data is None:
        data = meta.get("dataset") if meta.get("dataset") in DATASETS else None
        data_dir = data_dir or meta.get("data_dir")
        kw = {"image_size": meta.get("image_size"), "channels": meta.get("channels")}
        shape = None if data else meta.get("input_shape")
    if data:
        x, _ = load_dataset(data, "test", data_dir, **kw).take(8, seed=0).tensors()
        return x, f"8 {data} test images"
    if not shape:
        raise UserError(
            f"{args.model}: no dataset recorded with the model; pass --data NAME or "
            "--input-shape C,H,W for the example images"
        )
    example = torch.rand((8, *shape), generator=torch.Generator().manual_seed(0))
    return example, f"random images {'x'.join(map(str, shape))}"
