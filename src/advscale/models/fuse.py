"""A frozen, inference-optimized copy of a model for attacking and evaluating it.

Evaluating robustness runs the model forward and backward (to the input) many times with its
weights fixed and batch norm in eval mode. In that setting batch norm is an affine map that
can be folded into the convolution or linear layer before it, the parameters need no
gradient, and on CPU the channels-last layout runs convolutions faster. :func:`fuse_for_eval`
applies all three to a copy, made only when there is something to fold or lay out; the copy
computes the same function as the model in eval mode up to float rounding, and is checked to
do so on example inputs before it is used.

    >>> import torch
    >>> from advscale.models import build_classifier
    >>> model = build_classifier("small_cnn", {"num_classes": 10, "in_channels": 1}).eval()
    >>> fast = fuse_for_eval(model, example=torch.rand(8, 1, 28, 28))
    >>> fast.folded  # small_cnn's batch norm layers
    5
"""

from __future__ import annotations

import copy
import itertools
import logging

import torch
from torch import Tensor, fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from advscale.utils import eval_mode, set_submodule

log = logging.getLogger(__name__)

_CONV_BN = (
    (nn.Conv1d, nn.BatchNorm1d),
    (nn.Conv2d, nn.BatchNorm2d),
    (nn.Conv3d, nn.BatchNorm3d),
)
#: Largest difference between the copy's and the model's logits accepted, relative to the
#: logits' scale. Folding changes the order of float operations only (errors near 1e-6).
FUSE_RTOL = 1e-4


def fuse_for_eval(
    model: nn.Module,
    *,
    example: Tensor | None = None,
    channels_last: bool | None = None,
) -> nn.Module:
    """A copy of ``model`` in eval mode, batch norm folded, parameters frozen (or the model
    itself, when there is nothing to fold or lay out channels-last).

    The model itself is not changed. Batch norm layers whose input is a convolution or linear
    layer used nowhere else are folded into it. The pairs are found by tracing the model with
    ``torch.fx`` (in plain ``nn.Sequential`` containers when it cannot be traced), but the
    copy keeps the model's own forward, so custom autograd functions and hooks survive. With
    ``example`` inputs the copy's logits are compared with the model's in eval mode; if they
    differ by more than float rounding (or the copy fails, as a forward that ``.view()``s a
    channels-last feature map does), channels-last and then folding are given up.

    Args:
        model: the classifier.
        example: a few inputs (N, C, H, W) on the model's device to check the copy on.
        channels_last: store 4-D weights channels-last; None: on CPU only, where it speeds up
            convolutions.

    Returns:
        The copy, with attributes ``folded`` (number of batch norm layers folded) and
        ``channels_last`` (whether its weights are stored so). The model itself is returned
        unchanged, without ``folded``, when it holds TorchScript modules or members that
        cannot be deep-copied, and when there is nothing to do: no batch norm to fold and no
        channels-last layout to use (a model without batch norm on GPU, say). The foldable
        pairs are found on the model itself (tracing does not change it), so such a model is
        not copied at all. Frozen parameters alone are not worth a copy of the whole model:
        every attack and check here takes gradients with ``torch.autograd.grad`` with respect
        to the input only, which never computes or accumulates parameter gradients; freezing
        merely spares autograd the activations kept for weight gradients.
    """
    if any(isinstance(m, torch.jit.ScriptModule) for m in model.modules()):
        return model
    with eval_mode(model):  # the pairs of the eval-mode forward, which the copy runs
        pairs = _foldable_pairs(model)
    if channels_last is None:
        p = next(iter(model.parameters()), None)
        channels_last = p is None or p.device.type == "cpu"
    channels_last = channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules())
    if not pairs and not channels_last:
        return model
    try:
        fused = _frozen_copy(model)
    except Exception as e:  # a member that cannot be deep-copied: use the model itself
        log.info("cannot copy %s (%s); evaluating it as it is", type(model).__name__, e)
        return model
    folded = _fold_batchnorm(fused, pairs)
    if channels_last:
        fused.to(memory_format=torch.channels_last)
    if example is not None and (folded or channels_last):
        # Channels-last breaks a forward that .view()s a feature map; folding, a wrong pair.
        if channels_last and not _same_function(model, fused, example):
            fused.to(memory_format=torch.contiguous_format)
            channels_last = False
        if folded and not channels_last and not _same_function(model, fused, example):
            log.warning("folding batch norm changed the model's outputs; evaluating it unfolded")
            fused, folded = _frozen_copy(model), 0
    fused.folded = folded
    fused.channels_last = channels_last
    return fused


def _frozen_copy(model: nn.Module) -> nn.Module:
    with eval_mode(model):
        frozen = copy.deepcopy(model)
    return frozen.requires_grad_(False)


def _fold_batchnorm(model: nn.Module, pairs: list[tuple[str, str]]) -> int:
    """Fold eval-mode batch norm into the layer before it, in place; the number folded.

    ``pairs`` (layer, batch norm) come from :func:`_foldable_pairs`, on the model or on the
    original it was copied from, but the model's own forward is kept: the layer is replaced
    by its fused version and the batch norm by an identity, so custom autograd functions,
    hooks and attributes survive.
    """
    done = 0
    for layer_name, bn_name in pairs:
        layer, bn = model.get_submodule(layer_name), model.get_submodule(bn_name)
        if isinstance(layer, nn.Linear):
            new = fuse_linear_bn_eval(layer, bn)
        else:
            new = fuse_conv_bn_eval(layer, bn)
        new.requires_grad_(False)
        set_submodule(model, layer_name, new)
        set_submodule(model, bn_name, nn.Identity())
        done += 1
    return done


def _foldable(layer: nn.Module, bn: nn.Module) -> bool:
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.running_mean is None:
        return False  # (without running statistics batch norm uses the batch's, even in eval)
    if any(type(layer) is c and type(bn) is b for c, b in _CONV_BN):
        return True
    # BatchNorm1d normalizes dim 1: right for (N, features) outputs; the example check catches
    # a linear layer applied to (N, L, features).
    return (
        type(layer) is nn.Linear
        and type(bn) is nn.BatchNorm1d
        and (layer.out_features == bn.num_features)
    )


def _foldable_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(layer, batch norm) submodule names to fold, found on a ``torch.fx`` trace of the model
    (or, when it cannot be traced, as neighbours in a plain ``nn.Sequential``); the model is
    not changed. A pair is left out when the layer's output also feeds something else, or
    when either module is called more than once or registered under two names."""
    names: dict[int, list[str]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        names.setdefault(id(m), []).append(name)
    single = {n[0] for n in names.values() if len(n) == 1}  # modules registered once
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as e:  # control flow on values, unsupported Python: plain Sequentials only
        log.info(
            "cannot trace %s (%s); folding batch norm in nn.Sequential only",
            type(model).__name__,
            str(e).splitlines()[0] if str(e) else type(e).__name__,
        )
        pairs = []
        for seq_name, seq in model.named_modules():
            if type(seq) is not nn.Sequential:
                continue
            named = [(f"{seq_name}.{k}" if seq_name else k, m) for k, m in seq.named_children()]
            pairs += [
                (a, b)
                for (a, layer), (b, bn) in itertools.pairwise(named)
                if a in single and b in single and _foldable(layer, bn)
            ]
        return pairs
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        prev = node.args[0] if node.op == "call_module" and node.args else None
        if not (isinstance(prev, fx.Node) and prev.op == "call_module" and len(prev.users) == 1):
            continue
        a, b = prev.target, node.target
        if (
            calls[a] == calls[b] == 1
            and a in single
            and b in single
            and _foldable(model.get_submodule(a), model.get_submodule(b))
        ):
            pairs.append((a, b))
    return pairs


def _same_function(model: nn.Module, fused: nn.Module, x: Tensor) -> bool:
    with torch.no_grad(), eval_mode(model):
        ref = model(x).float()
        try:
            out = fused(x).float()
        except Exception:  # e.g. a forward that reads a batch norm's attributes itself
            return False
    if ref.shape != out.shape:
        return False
    scale = float(ref.abs().max()) + 1.0
    return bool(torch.isfinite(out).all()) and float((ref - out).abs().max()) <= FUSE_RTOL * scale
