"""Export a model so that it runs without advscale: torch.export (``.pt2``), TorchScript (``.ts``)
or ONNX (``.onnx``, with the optional ``onnx`` package).

The exported model is the whole classifier, normalization (and resizing) included: it takes
[0, 1] images of the example's shape, any batch size, and returns logits. Before the file is
put in place it is loaded back and must give the model's logits on the example images.

Loading without advscale::

    torch.export.load("model.pt2").module()(x)     # torch >= 2.6
    torch.jit.load("model.ts")(x)
    onnxruntime.InferenceSession("model.onnx").run(None, {"images": x.numpy()})

Example:
    >>> export_model(model, "model.pt2", example=x[:8])  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import importlib.util
import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from advscale.errors import UserError
from advscale.files import atomic_write

#: File suffix -> export format.
FORMATS = {".pt2": "torch.export", ".ts": "torchscript", ".onnx": "onnx"}
#: Weights up to this size are embedded in the ``.onnx`` file (protobuf stops at 2 GB); larger
#: ones are written beside it as ``NAME.onnx.data``.
ONNX_EMBED_BYTES = 1_800_000_000


@dataclass
class Exported:
    """What :func:`export_model` wrote.

    Attributes:
        path: the file.
        format: "torch.export", "torchscript" or "onnx".
        max_abs_diff: largest difference between the exported model's logits and the model's
            on the example images (None when the format could not be run here: ONNX without
            onnxruntime).
    """

    path: Path
    format: str
    max_abs_diff: float | None


def export_format(path: str | os.PathLike) -> str:
    """The export format a file name asks for, from its suffix.

    Raises:
        UserError: a suffix other than .pt2, .ts or .onnx.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UserError(
            f"{path}: cannot tell the export format from {suffix or 'no suffix'!r}; use "
            ".pt2 (torch.export), .ts (TorchScript) or .onnx (ONNX)"
        )
    return FORMATS[suffix]


def export_model(
    model: nn.Module, path: str | os.PathLike, example: Tensor, *, atol: float = 1e-4
) -> Exported:
    """Write ``model`` (in eval mode) to ``path`` in the format its suffix names.

    Args:
        model: a classifier taking [0, 1] images (N, C, H, W); it is not changed.
        path: ``*.pt2``, ``*.ts`` or ``*.onnx``.
        example: images (N, C, H, W) the export is traced on and checked against, N >= 2 (the
            batch size stays free).
        atol: the largest logit difference the check allows.

    Raises:
        UserError: unknown suffix, a missing optional package (named with its install line),
            a model the exporter cannot take, or an exported model whose logits differ.
    """
    fmt = export_format(path)
    if example.ndim != 4 or len(example) < 2:
        raise UserError(
            f"the export example must be images (N, C, H, W) with N >= 2, got {tuple(example.shape)}"
        )
    scripted = any(isinstance(m, torch.jit.ScriptModule) for m in model.modules())
    if scripted and fmt == "torch.export":
        raise UserError(
            f"{path}: torch.export cannot take a TorchScript model (it traces Python code, "
            "and a TorchScript file holds none); export it as .ts or .onnx"
        )
    if fmt == "onnx":
        _require("onnx", "exporting to ONNX needs the onnx package: pip install onnx onnxscript")
        _require("onnxscript", "exporting to ONNX needs onnxscript: pip install onnxscript")
    # A copy in eval mode on the example's device: the caller's model keeps its mode and grads.
    net = copy.deepcopy(model).eval().to(example.device)
    for p in net.parameters():
        if p.is_leaf:  # a TorchScript module's copied parameters are not
            p.requires_grad_(False)
    example = example.float()
    with torch.no_grad():
        expected = net(example)
    diff: list[float | None] = [None]

    def write(tmp: Path) -> None:
        try:
            run = _WRITERS[fmt](net, example, tmp, Path(path))
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - each exporter has its own errors; all are the model's
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"{fmt} cannot export this model: {first}") from None
        if run is None:
            return
        with torch.no_grad():
            got = run(example)
        d = float((got - expected).abs().max())
        if not d <= atol:
            raise UserError(
                f"the {fmt} export gives other logits than the model (max difference {d:.3g} > "
                f"{atol:g}); nothing was written"
            )
        diff[0] = d

    return Exported(atomic_write(path, write), fmt, diff[0])


def _require(module: str, message: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise UserError(message)


def _torch_export(net: nn.Module, example: Tensor, tmp: Path, final: Path):
    batch = torch.export.Dim.DYNAMIC
    program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
    # Through a buffer: torch.export wants a file name ending in .pt2, not the temporary one.
    buf = io.BytesIO()
    torch.export.save(program, buf)
    tmp.write_bytes(buf.getvalue())
    return torch.export.load(io.BytesIO(tmp.read_bytes())).module()


def _torchscript(net: nn.Module, example: Tensor, tmp: Path, final: Path):
    traced = torch.jit.trace(net, example, check_trace=False)
    torch.jit.save(traced, str(tmp))
    return torch.jit.load(str(tmp), map_location=example.device)


def _onnx(net: nn.Module, example: Tensor, tmp: Path, final: Path):
    size = sum(t.numel() * t.element_size() for t in net.state_dict().values())

    def export(staged: Path) -> None:
        torch.onnx.export(
            net,
            (example,),
            str(staged),
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim.DYNAMIC},),
            dynamo=True,
            external_data=size > ONNX_EMBED_BYTES,
            verbose=False,
        )

    staged_export(final, tmp, export)
    if importlib.util.find_spec("onnxruntime") is None:
        return None  # written, not run here
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"images": x.cpu().numpy()})[0]).to(
        x.device
    )


def staged_export(final: Path, tmp: Path, write: Callable[[Path], None]) -> None:
    """Run ``write`` on a file named as ``final`` in a private directory beside it, then move
    what it wrote into place: the file itself to ``tmp`` (which :func:`atomic_write` renames to
    ``final``), any companion beside ``final`` under the same name it was written with.

    Exporters name companion files after the file they write (ONNX's external weights:
    ``model.onnx.data``, referenced by that name from ``model.onnx``); written at the temporary
    name they would be hidden files named after it, and ``model.onnx`` would not load from a
    copy of its directory.
    """
    with tempfile.TemporaryDirectory(prefix=".export-", dir=tmp.parent) as work:
        staged = Path(work) / final.name
        write(staged)
        for extra in sorted(Path(work).iterdir()):
            if extra != staged:
                atomic_write(final.parent / extra.name, lambda p, e=extra: os.replace(e, p))
        os.replace(staged, tmp)


_WRITERS = {"torch.export": _torch_export, "torchscript": _torchscript, "onnx": _onnx}

__all__ = ["FORMATS", "Exported", "export_format", "export_model"]
