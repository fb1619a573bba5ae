"""The names torchattacks, Foolbox and AutoAttack users type build the same attacks, every
registered attack reports its norm, and targets can be chosen by name."""

from __future__ import annotations

import pytest
import torch

from advscale.attacks import (
    ALIASES,
    APGD,
    ATTACKS,
    PGD,
    IterBasic,
    Square,
    attack_norm,
    build_attack,
    canonical_norm,
)
from advscale.errors import UserError


@pytest.mark.parametrize("spelling", ["Linf", "linf", "inf", "LINF", float("inf")])
def test_linf_spellings(spelling, trained):
    assert canonical_norm(spelling) == "linf"
    assert PGD(trained.model, norm=spelling).norm == "linf"


@pytest.mark.parametrize("spelling", ["L2", "l2", 2, "2", 2.0])
def test_l2_spellings(spelling, trained):
    assert canonical_norm(spelling) == "l2"
    assert build_attack("apgd", trained.model, 0.5, norm=spelling).norm == "l2"


def test_unknown_norm_lists_the_spellings(trained):
    with pytest.raises(UserError, match="allowed: 'linf'.*'l2'"):
        PGD(trained.model, norm="L1")


@pytest.mark.parametrize("name", ["BIM", "bim", "I-FGSM"])
def test_bim_is_iter_basic(name, trained):
    x, y = trained.x[:8], trained.y[:8]
    attack = build_attack(name, trained.model, 4 / 255)
    assert type(attack) is IterBasic
    assert torch.equal(attack(x, y), build_attack("iter_basic", trained.model, 4 / 255)(x, y))


def test_alias_names_resolve_to_registered_attacks():
    for alias, own in ALIASES["attack"].items():
        assert own in ATTACKS, alias


def test_n_restarts_is_restarts(trained):
    m = trained.model
    assert PGD(m, n_restarts=3).restarts == 3
    assert APGD(m, n_restarts=2).restarts == 2
    assert Square(m, n_restarts=4).restarts == 4
    assert build_attack("apgd_ce", m, 8 / 255, n_restarts=2, n_iter=7).steps == 7
    assert build_attack("square", m, 8 / 255, n_restarts=2).restarts == 2


def test_every_registered_attack_reports_its_norm(trained):
    for name in ATTACKS:
        norm = attack_norm(name)
        assert norm in ("linf", "l2")
        eps = 8 / 255 if norm == "linf" else 0.5
        if name != "autoattack":
            assert build_attack(name, trained.model, eps).norm == norm, name
    assert attack_norm("pgd_l2") == attack_norm("apgd_t_l2") == attack_norm("square_l2") == "l2"
    assert attack_norm("apgd", norm="L2") == "l2"


def test_least_likely_target_by_name(trained):
    x, y = trained.x[:32], trained.y[:32]
    with torch.no_grad():
        ll = trained.model(x).argmin(1)
    by_name = PGD(trained.model, 8 / 255, steps=5, seed=0, target="ll").run(x, y)
    given = PGD(trained.model, 8 / 255, steps=5, seed=0).run(x, y, target=ll)
    assert torch.equal(by_name.x_adv, given.x_adv) and torch.equal(by_name.fooled, given.fooled)
    assert by_name.forward == given.forward + len(x)  # the clean pass that finds y_LL


def test_random_and_fixed_targets(trained):
    x, y = trained.x[:64], trained.y[:64]
    result = APGD(trained.model, 0.15, steps=10, seed=0, target="random").run(x, y)
    with torch.no_grad():
        pred = trained.model(result.x_adv).argmax(1)
    # A targeted success lands on a class other than the true one.
    assert bool((pred[result.fooled] != y[result.fooled]).all())
    assert int(result.fooled.sum()) > 0
    result = APGD(trained.model, 0.15, steps=10, seed=0, target=3).run(x, y)
    with torch.no_grad():
        pred = trained.model(result.x_adv).argmax(1)
    assert bool((pred[result.fooled] == 3).all()) and int(result.fooled.sum()) > len(x) // 4


def test_n_iter_is_steps_on_the_classes(trained):
    x, y = trained.x[:16], trained.y[:16]
    by_alias = PGD(trained.model, 8 / 255, n_iter=3, seed=0)
    own = PGD(trained.model, 8 / 255, steps=3, seed=0)
    assert by_alias.steps == 3 and by_alias.alpha_scale == own.alpha_scale
    assert torch.equal(by_alias(x, y), own(x, y))
    assert APGD(trained.model, n_iter=4).steps == 4


def test_conflicting_or_unknown_arguments_are_named(trained):
    with pytest.raises(UserError, match="n_iter=3 and steps=5"):
        PGD(trained.model, n_iter=3, steps=5)
    with pytest.raises(UserError, match="PGD: unknown argument 'n_iters'"):
        PGD(trained.model, n_iters=3)
