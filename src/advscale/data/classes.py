"""Class order: a dataset's label indices must mean the classes a model's outputs mean."""

from __future__ import annotations

from collections.abc import Sequence

from advscale.data.base import DataError


def check_class_order(
    dataset_classes: Sequence[str],
    model_classes: Sequence[str] | None,
    source: str,
    model: str = "the model",
) -> str:
    """Check that ``dataset_classes`` (label order of the data) equal the model's class names.

    An ImageFolder's labels follow its sorted folder names; a model trained on other classes,
    or on the same classes in another order, would be scored against the wrong labels.

    Args:
        dataset_classes: class names of the data, in label order.
        model_classes: class names of the model's outputs, in order; None when unknown.
        source: the data, as the user named it (e.g. ``imagefolder photos/ (test)``).
        model: the model, as the user named it.

    Returns:
        What was checked, one line for the user: that the order matches, or that it could not be
        checked because the model's class names are unknown.

    Raises:
        DataError: the names differ; the message names both sides and where they differ.
    """
    if model_classes is None:
        return (
            f"class order of {source} not checked: the class names of {model} are unknown "
            "(give them in its sidecar or spec file)"
        )
    mine, theirs = list(model_classes), list(dataset_classes)
    if mine == theirs:
        return f"class order of {source} matches {model} ({len(mine)} classes)"
    if len(mine) != len(theirs):
        detail = f"the model has {len(mine)} classes, the data {len(theirs)}"
    else:
        diffs = [
            f"{i}: model {a!r} vs data {b!r}"
            for i, (a, b) in enumerate(zip(mine, theirs, strict=True))
            if a != b
        ]
        detail = "; ".join(diffs[:5]) + (f"; ... ({len(diffs)} differ)" if len(diffs) > 5 else "")
    only_model = [c for c in mine if c not in theirs]
    only_data = [c for c in theirs if c not in mine]
    extra = ""
    if only_model or only_data:
        extra = f". Only in the model: {only_model[:10]}; only in the data: {only_data[:10]}"
    raise DataError(
        f"class names of {model} do not match those of {source} ({detail}){extra}. "
        f"Model classes: {mine[:20]}; data classes: {theirs[:20]}. Use data whose class folders "
        "match the model's classes, or give the model's classes in its sidecar/spec file."
    )
