"""Other libraries' argument names (``n_iter=``, ``n_restarts=``) on every attack class.

The names themselves live in the one alias table, :data:`advscale.attacks.registry.ALIASES`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from advscale.errors import UserError


def renaming_init(init: Callable[..., None], who: str) -> Callable[..., None]:
    """``init`` (an attack class's ``__init__``) taking aliased argument names as well, renamed
    to advscale's before it runs (:func:`advscale.attacks.registry.canonical_kwargs`)."""

    @functools.wraps(init)
    def renamed(self: Any, *args: Any, **kwargs: Any) -> None:
        from advscale.attacks.registry import canonical_kwargs  # imports every attack class

        init(self, *args, **canonical_kwargs(kwargs, f"{who}: "))

    return renamed


def unknown_arguments(who: str, names: Iterable[str]) -> UserError:
    """The error for arguments attack class ``who`` does not take, naming them."""
    return UserError(f"{who}: unknown argument {', '.join(map(repr, names))}")
