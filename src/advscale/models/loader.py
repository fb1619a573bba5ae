"""Load any model: advscale checkpoints, TorchScript files, timm models and Python factories.

:func:`load_any_model` is the one entry every command loads models through. Every form comes back
as a :class:`~advscale.models.Classifier` on [0, 1] images (resize and normalization inside the
model), so every attack, evaluation and report works on it.

Model specs, as given to :func:`load_any_model` or ``advscale eval --model``:

- ``runs/x/model`` (or ``.safetensors``/``.json``): an advscale checkpoint.
- ``model.ts`` / ``model.pt``: a TorchScript file (``torch.jit.save``); the network must take
  normalized images, so give ``mean``/``std`` (default: none, i.e. it takes [0, 1] images).
- ``timm:resnet18`` with ``weights``: a timm architecture with a local weights file.
- ``package.module:factory`` with optional ``weights``: ``factory()`` (called with
  ``num_classes`` when it accepts it) builds the network. The module is imported only because
  the spec names it: importing runs its code, so name only code you trust.
- ``spec.yaml``: a mapping with the arguments of :func:`load_any_model` (``model``,
  ``weights``, ``num_classes``, ``input_size``, ``mean``, ``std``, ``classes``). It cannot
  turn on unpickling: ``trust`` is given only where the model is loaded (``--trust-checkpoint``).

``SPEC@WEIGHTS`` is a shorthand for ``weights=WEIGHTS``. A JSON sidecar next to a TorchScript or
weights file (``model.json`` for ``model.ts``) may give ``classes``, ``mean``, ``std`` and
``input_size``. Class names, when known (:func:`model_classes`), are checked against the data's
(:func:`advscale.data.check_class_order`), so an ImageFolder with other classes is an error, not a
silent mislabelling.

Example:
    >>> model = load_any_model("model.ts", mean=[0.5], std=[0.5], classes=["cat", "dog"])  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advscale.errors import UserError
from advscale.files import read_structured, read_text
from advscale.models.builders import (
    ModelBuildError,
    build_timm,
    load_timm_weights,
    pretrained_config,
)
from advscale.models.checkpoint import checkpoint_paths, load_model
from advscale.models.weights import CheckpointError, load_state, read_weights
from advscale.models.wrapper import Classifier

SPEC_KEYS = ("model", "weights", "num_classes", "input_size", "mean", "std", "classes")


class ExternalModelError(UserError):
    """A model that cannot be loaded; the message names the spec, file or argument to fix."""


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files holding compiled code (``*/code/``), unlike plain ``torch.save`` files."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.endswith("constants.pkl") for n in z.namelist())


def _is_damaged_zip(path: Path) -> bool:
    """A file with a zip header but no readable directory at its end: cut short in a copy."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04" and not zipfile.is_zipfile(path)


def _is_checkpoint(spec: str) -> bool:
    weights, sidecar = checkpoint_paths(spec)
    # A lone .safetensors file is no checkpoint: without a sidecar it names no architecture.
    return sidecar.exists() or (weights.exists() and Path(spec).suffix != ".safetensors")


def _sidecar(path: Path) -> dict[str, Any]:
    """Optional JSON next to a model file (same name, ``.json``) with classes/mean/std/input_size."""
    side = path.with_suffix(".json")
    if not side.is_file():
        return {}
    meta = read_structured(side, "model sidecar", error=ExternalModelError, fmt="json")
    if not isinstance(meta, dict):
        raise ExternalModelError(
            f"{side}: expected a JSON object with classes, mean, std, input_size"
        )
    found = {
        k: meta[k] for k in ("classes", "mean", "std", "input_size", "num_classes") if k in meta
    }
    _check_spec_types(found, str(side))
    if isinstance(found.get("classes"), str):  # a file of names is for spec files only
        raise ExternalModelError(f"{side}: classes must be a list of class names, got str")
    return found


def _read_classes(classes: Sequence[str] | str | os.PathLike | None) -> list[str] | None:
    """Class names from a list, or from a text file with one name per line."""
    if classes is None:
        return None
    if isinstance(classes, (str, os.PathLike)):
        p = Path(classes)
        if not p.is_file():
            raise ExternalModelError(f"classes: {p}: no such file (one class name per line)")
        text = read_text(p, "class names file", error=ExternalModelError)
        return [line.strip() for line in text.splitlines() if line.strip()]
    return [str(c) for c in classes]


def _split_weights(
    spec: str, weights: str | os.PathLike | None
) -> tuple[str, str | os.PathLike | None]:
    """``SPEC@WEIGHTS`` -> (SPEC, WEIGHTS), only when the part after the last ``@`` is a file."""
    if weights is None and "@" in spec and not Path(spec).exists():
        head, tail = spec.rsplit("@", 1)
        if Path(tail).expanduser().is_file():
            return head, tail
    return spec, weights


def load_any_model(
    spec: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    trust: bool = False,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    input_size: int | Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    classes: Sequence[str] | str | os.PathLike | None = None,
) -> Classifier:
    """The model named by ``spec`` as a Classifier in eval mode on ``device``.

    See the module docstring for the spec forms.

    Args:
        spec: checkpoint path (with or without ``.safetensors``/``.json``), TorchScript file,
            ``timm:NAME``, ``package.module:factory`` (each with optional ``@WEIGHTS``) or a
            ``.yaml`` spec file.
        device: where to put the model.
        trust: allow a weights file that needs full unpickling (runs code stored in the file).
            Only the caller decides this; no file can.
        weights: local weights file (``.safetensors``, or ``.pt``/``.pth`` read without
            unpickling code unless ``trust``).
        num_classes: expected number of outputs (checked; passed to timm and factories).
        input_size: the size the network takes; other sizes are resized inside the model.
        mean, std: the normalization the network expects (per channel, on [0, 1] inputs).
        classes: class names in output order (list, or a text file with one per line).

    Returns:
        The model; ``model.classes`` holds the class names when known (else None) and
        ``model.meta`` what it was loaded from.

    Raises:
        ExternalModelError, CheckpointError: unknown spec form, missing file or package, weights
            that do not fit, an output size other than ``num_classes``.
    """
    text = os.fspath(spec)
    if text.endswith((".yaml", ".yml")) and Path(text).is_file():
        return _from_spec_file(Path(text), device, trust)
    text, weights = _split_weights(text, weights)
    given_classes = _read_classes(classes)
    path = Path(text).expanduser()

    if _is_checkpoint(text):
        if weights is not None or mean is not None or std is not None:
            raise ExternalModelError(
                f"{text}: an advscale checkpoint fixes its weights and normalization; "
                "do not pass weights, mean or std with it"
            )
        model = load_model(text, device)
        if num_classes is None and given_classes is None:
            return model.eval()  # exactly as saved: its sidecar already says everything
        meta = dict(getattr(model, "meta", {}))
        found_classes = given_classes or meta.get("classes")
        _check_outputs(model, text, num_classes, found_classes)
        return _finish(model, found_classes, {"kind": "advscale", "spec": text}, device)

    side: dict[str, Any] = {}
    if path.is_file():
        if path.suffix == ".safetensors":
            raise ExternalModelError(
                f"{path}: a weights file alone does not say which network it belongs to; pass the "
                f"network as the spec (timm:NAME or package.module:factory) and this file as weights"
            )
        if _is_damaged_zip(path):
            raise ExternalModelError(
                f"{path}: a truncated or damaged archive (it starts as the zip files TorchScript and "
                "torch.save write, but its end is missing or corrupt); copy or save it again"
            )
        if not _is_torchscript(path):
            hint = " (a plain torch.save file: pass its network as the spec and it as weights)"
            raise ExternalModelError(
                f"{path}: not a TorchScript archive{hint if path.suffix in ('.pt', '.pth') else ''}"
            )
        try:
            net = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as e:
            raise ExternalModelError(
                f"{path}: cannot load TorchScript ({str(e).splitlines()[0]})"
            ) from None
        if weights is not None:
            raise ExternalModelError(
                f"{path}: a TorchScript file holds its weights; do not pass weights"
            )
        side = _sidecar(path)
        info = {"kind": "torchscript", "spec": str(path)}
    elif text.startswith("timm:"):
        try:
            net = build_timm(text[5:], **({"num_classes": num_classes} if num_classes else {}))
        except ModelBuildError as e:
            raise ExternalModelError(f"{text}: {e}") from None
        cfg = pretrained_config(net)
        side = {
            "mean": cfg.get("mean"),
            "std": cfg.get("std"),
            "input_size": list(cfg["input_size"][-2:]) if cfg.get("input_size") else None,
        }
        info = {"kind": "timm", "spec": text}
    elif ":" in text and not path.exists():
        net = _factory(text, num_classes)
        info = {"kind": "factory", "spec": text}
    else:
        raise ExternalModelError(
            f"{text}: no such model file or checkpoint; a model spec is an advscale checkpoint, a "
            "TorchScript file, timm:NAME or package.module:factory (weights with --model SPEC@WEIGHTS)"
        )

    if weights is not None:
        _load_weights(net, Path(weights).expanduser(), trust, text, timm=info["kind"] == "timm")
        info["weights"] = str(weights)
        side = {**_sidecar(Path(weights)), **{k: v for k, v in side.items() if v is not None}}
    mean = list(mean) if mean is not None else side.get("mean")
    std = list(std) if std is not None else side.get("std")
    if (mean is None) != (std is None):
        raise ExternalModelError(f"{text}: give both mean and std, or neither")
    if mean is None:
        mean, std = [0.0], [1.0]  # the network takes [0, 1] images as they are
    size = input_size if input_size is not None else side.get("input_size")
    if isinstance(size, Sequence) and not isinstance(size, str):
        size = tuple(int(s) for s in size)[-2:]
    try:
        model = Classifier(net, mean, std, input_size=size)
    except ValueError as e:
        raise ExternalModelError(f"{text}: {e}") from None
    found_classes = given_classes or side.get("classes")
    _check_outputs(model, text, num_classes or side.get("num_classes"), found_classes)
    return _finish(model, found_classes, {**info, "mean": list(mean), "std": list(std)}, device)


def _finish(
    model: Classifier, classes: list[str] | None, meta: dict[str, Any], device: Any
) -> Classifier:
    model.classes = list(classes) if classes else None  # type: ignore[attr-defined]
    old = dict(getattr(model, "meta", {}) or {})
    model.meta = {**old, **meta, "classes": model.classes}  # type: ignore[attr-defined]
    return model.to(device).eval()


def _from_spec_file(path: Path, device: Any, trust: bool) -> Classifier:
    raw = read_structured(path, "model spec file", error=ExternalModelError, fmt="yaml")
    if not isinstance(raw, dict) or "model" not in raw:
        raise ExternalModelError(
            f"{path}: a model spec file is a mapping with at least 'model'; keys: {', '.join(SPEC_KEYS)}"
        )
    if "trust" in raw:
        raise ExternalModelError(
            f"{path}: key 'trust' is not allowed in a model spec file: a file cannot allow "
            "unpickling its own weights. Pass trust at the call site instead (--trust-checkpoint, "
            "or load_any_model(..., trust=True)), and only for files you trust."
        )
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise ExternalModelError(
            f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(SPEC_KEYS)}"
        )
    _check_spec_types(raw, str(path))
    model = raw["model"]
    if model.endswith((".yaml", ".yml")):
        # A spec naming a spec (itself, or one naming it back) would never end.
        raise ExternalModelError(
            f"{path}: model {model!r} is another spec file; a spec file's model is a checkpoint, "
            "a TorchScript file, timm:NAME or package.module:factory"
        )
    args = dict(raw)
    base = path.parent
    # Relative files in the spec are relative to the spec file.
    for key in ("model", "weights", "classes"):
        v = args.get(key)
        if isinstance(v, str) and not Path(v).is_absolute() and (base / v).exists():
            args[key] = str(base / v)
    spec = args.pop("model")
    return load_any_model(spec, device, trust=trust, **args)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _numbers(v: Any) -> bool:
    return (
        isinstance(v, list)
        and bool(v)
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
    )


#: What each field of a spec file or sidecar must be: (check, description for the error).
SPEC_TYPES: dict[str, tuple[Any, str]] = {
    "model": (lambda v: isinstance(v, str) and v, "a model spec (text)"),
    "weights": (lambda v: v is None or isinstance(v, str), "a file name"),
    "num_classes": (lambda v: v is None or (_int(v) and v >= 1), "an integer >= 1"),
    "input_size": (
        lambda v: (
            v is None
            or (_int(v) and v >= 1)
            or (_numbers(v) and len(v) <= 3 and all(_int(x) and x >= 1 for x in v))
        ),
        "an integer or a list of integers (H, W)",
    ),
    "mean": (lambda v: v is None or _numbers(v), "a list of numbers"),
    "std": (lambda v: v is None or _numbers(v), "a list of numbers"),
    "classes": (
        lambda v: (
            v is None
            or isinstance(v, str)
            or (isinstance(v, list) and v and all(isinstance(c, str) for c in v))
        ),
        "a list of class names or a file of them",
    ),
}


def _check_spec_types(values: dict[str, Any], source: str) -> None:
    """Refuse a field of a spec file or sidecar of the wrong type, naming it."""
    for key, (ok, expected) in SPEC_TYPES.items():
        if key in values and not ok(values[key]):
            raise ExternalModelError(
                f"{source}: {key} must be {expected}, got {type(values[key]).__name__} "
                f"{values[key]!r:.60}"
            )


def _check_outputs(
    model: nn.Module, source: str, num_classes: int | None, classes: list[str] | None
) -> None:
    """The number of outputs must match ``num_classes`` and the class names given."""
    n = _num_outputs(model, source)
    if n is None:
        return
    if num_classes is not None and n != int(num_classes):
        raise ExternalModelError(
            f"{source}: the model outputs {n} classes but num_classes={num_classes}"
        )
    if classes is not None and len(classes) != n:
        raise ExternalModelError(
            f"{source}: the model outputs {n} classes but {len(classes)} class names were given"
        )


def _num_outputs(model: nn.Module, source: str) -> int | None:
    """Outputs on a probe image, when the input shape can be guessed (channels from normalization)."""
    channels = len(model.mean) if isinstance(model, Classifier) and len(model.mean) > 1 else None  # type: ignore[arg-type]
    size = model.input_size if isinstance(model, Classifier) and model.input_size else None
    tries = [
        (c, s)
        for c in ([channels] if channels else [1, 3])
        for s in ([size] if size else [(28, 28), (32, 32)])
    ]
    for c, s in tries:
        x = torch.rand(2, c, *s)
        try:
            with torch.no_grad():
                out = model.eval()(x)
        except Exception:  # noqa: BLE001 - the probe only guesses; evaluation reports real errors
            continue
        if isinstance(out, torch.Tensor) and out.ndim == 2:
            return int(out.shape[1])
        raise ExternalModelError(
            f"{source}: the model must return (N, classes) scores, got {type(out).__name__} "
            f"of shape {tuple(getattr(out, 'shape', ()))}"
        )
    return None


def _factory(spec: str, num_classes: int | None) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    if (
        not module_name
        or not attr
        or not all(p.isidentifier() for p in module_name.split(".") + attr.split("."))
    ):
        raise ExternalModelError(f"{spec}: expected package.module:factory")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(
            0, os.getcwd()
        )  # a module in the working directory, as `python -m` finds it
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ExternalModelError(f"{spec}: cannot import {module_name!r} ({e})") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ExternalModelError(f"{spec}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ExternalModelError(f"{spec}: {attr!r} is not callable")
    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        try:
            if "num_classes" in inspect.signature(obj).parameters:
                kwargs["num_classes"] = int(num_classes)
        except (TypeError, ValueError):
            pass
    net = obj(**kwargs)
    if not isinstance(net, nn.Module):
        raise ExternalModelError(
            f"{spec}: the factory returned {type(net).__name__}, not a torch.nn.Module"
        )
    return net


def _load_weights(net: nn.Module, path: Path, trust: bool, source: str, timm: bool) -> None:
    state = read_weights(path, trust=trust)
    try:
        (load_timm_weights if timm else load_state)(net, state, f"{path} (for {source})")
    except CheckpointError as e:
        raise ExternalModelError(str(e)) from None


def data_options(model: nn.Module, dataset: str) -> dict[str, Any]:
    """``load_dataset`` options that fit ``model``: for an ImageFolder, its input size and channels.

    Images of mixed sizes are resized to what the model takes (the model's normalization
    stays inside the model); other datasets are left as they are.
    """
    if dataset != "imagefolder" or not isinstance(model, Classifier):
        return {}
    opts: dict[str, Any] = {}
    if model.input_size:
        opts["image_size"] = tuple(model.input_size)
    if len(model.mean) == 3:
        opts["channels"] = 3
    return opts


def model_classes(model: nn.Module) -> list[str] | None:
    """The class names a model was trained on, when known (advscale sidecar or given)."""
    classes = getattr(model, "classes", None)
    if classes is None:
        classes = (getattr(model, "meta", None) or {}).get("classes")
    return list(classes) if classes else None


__all__ = ["ExternalModelError", "data_options", "load_any_model", "model_classes"]
