"""advscale's attacks against the reference implementations (torchattacks, Foolbox 3, ART,
pyautoattack).

Same model, same batch: FGSM must agree to float precision. Attacks with random draws of their
own cannot agree image by image with a peer's, so "at least as strong" is judged on the images
only one of the two breaks: ours may not miss significantly more of them than the peer's
(one-sided exact binomial test, p < 0.01), a verdict a weakening of a few images decides, where
comparing two robust accuracies of 200 images resolves one or two. (APGD and APGD-T run from
the same start as pyautoattack agree image by image: ``test_apgd_schedule.py``.) L2 is
first-class, with ε an L2 radius in [0, 1] pixel units as RobustBench (0.5 leaves the tiny model
with some robust and some broken points, so a weaker attack shows).
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch

from advscale.attacks import APGD, APGDL2, APGDTL2, FGSM, PGD, SquareL2, lp_norm

EPS = 8 / 255
EPS_L2 = 0.5


def robust_accuracy(model, x, y, x_adv) -> float:
    """Share of examples correct on the clean image and on the adversarial one."""
    with torch.no_grad():
        clean = model(x).argmax(1) == y
        adv = model(x_adv).argmax(1) == y
    return float((clean & adv).float().mean())


def broken(model, x, y, x_adv):
    """(N,) bool: correct on the clean image, wrong on the adversarial one."""
    with torch.no_grad():
        return (model(x).argmax(1) == y) & (model(x_adv).argmax(1) != y)


def assert_not_weaker(ours, theirs) -> None:
    """Ours (N,) broken flags are not significantly fewer than the peer's: among the images
    only one attack breaks, P(theirs-only >= observed | fair coin) >= 0.01."""
    ours_only = int((ours & ~theirs).sum())
    theirs_only = int((theirs & ~ours).sum())
    n = ours_only + theirs_only
    p = sum(math.comb(n, k) for k in range(theirs_only, n + 1)) / 2**n if n else 1.0
    assert p >= 0.01, f"the peer alone breaks {theirs_only} images, ours alone {ours_only}"


@pytest.fixture(scope="module")
def batch(trained):
    """A copy of the model (the peers' backward passes fill parameter gradients) and 200 images."""
    return copy.deepcopy(trained.model), trained.x[:200], trained.y[:200]


def test_tiny_model_is_trained(trained):
    assert float(trained.clean_correct.float().mean()) > 0.65


def test_fgsm_equals_torchattacks(batch):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = batch
    ours = FGSM(model, EPS)(x, y)
    theirs = torchattacks.FGSM(model, eps=EPS)(x, y)
    assert (ours - theirs).abs().max() <= 1e-6
    assert (ours - x).abs().max() > EPS * 0.99  # a real step was taken


def test_fgsm_equals_foolbox(batch):
    fb = pytest.importorskip("foolbox")
    model, x, y = batch
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    _, clipped, _ = fb.attacks.FGSM()(fmodel, x, y, epsilons=EPS)
    assert (FGSM(model, EPS)(x, y) - clipped).abs().max() <= 1e-6


def test_fgsm_equals_art(batch):
    pytest.importorskip("art")
    from art.attacks.evasion import FastGradientMethod
    from art.estimators.classification import PyTorchClassifier

    model, x, y = batch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = PyTorchClassifier(
            model,
            loss=torch.nn.CrossEntropyLoss(),
            input_shape=tuple(x.shape[1:]),
            nb_classes=10,
            clip_values=(0.0, 1.0),
            device_type="cpu",
        )
        theirs = FastGradientMethod(clf, norm=np.inf, eps=EPS, eps_step=EPS).generate(
            x.numpy(), y=y.numpy()
        )
    assert (FGSM(model, EPS)(x, y) - torch.from_numpy(theirs)).abs().max() <= 1e-6


@pytest.mark.parametrize("eps", [2 / 255, 8 / 255])
def test_pgd_at_least_as_strong_as_torchattacks(batch, eps):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = batch
    alpha = eps / 4
    theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=10, random_start=True)(x, y)
    result = PGD(model, eps, steps=10, alpha=alpha, seed=0).run(x, y)
    ours = robust_accuracy(model, x, y, result.x_adv)
    assert_not_weaker(broken(model, x, y, result.x_adv), broken(model, x, y, theirs))
    # Robust accuracy from the returned images equals the one from the fooled flags.
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    assert ours == pytest.approx(float((clean & ~result.fooled).float().mean()))


def test_apgd_ce_at_least_as_strong_as_pgd(batch):
    model, x, y = batch
    eps = 2 / 255  # where robust accuracy is neither 0 nor clean accuracy, so the order shows
    pgd = PGD(model, eps, steps=10, alpha=eps / 4, seed=0)(x, y)
    apgd = APGD(model, eps, steps=20, seed=0)(x, y)
    assert_not_weaker(broken(model, x, y, apgd), broken(model, x, y, pgd))
    assert robust_accuracy(model, x, y, apgd) <= robust_accuracy(model, x, y, pgd)


def check_l2_result(model, x, y, result, eps):
    assert float(lp_norm(result.x_adv - x, "l2").max()) <= eps * (1 + 1e-5)
    assert bool((result.x_adv >= 0).all() and (result.x_adv <= 1).all())
    ours = robust_accuracy(model, x, y, result.x_adv)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    assert ours == pytest.approx(float((clean & ~result.fooled).float().mean()))
    return ours


def test_apgd_ce_l2_at_least_as_strong_as_pyautoattack_and_torchattacks(batch):
    pyaa = pytest.importorskip("pyautoattack.autopgd_base")
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = batch
    result = APGDL2(model, EPS_L2, steps=20, seed=0).run(x, y)
    ours = check_l2_result(model, x, y, result, EPS_L2)
    reference = pyaa.APGDAttack(model, n_iter=20, norm="L2", eps=EPS_L2, seed=0, device="cpu")
    mine = broken(model, x, y, result.x_adv)
    assert_not_weaker(mine, broken(model, x, y, reference.perturb(x, y)))
    theirs = torchattacks.APGD(model, norm="L2", eps=EPS_L2, steps=20, seed=0)(x, y)
    assert_not_weaker(mine, broken(model, x, y, theirs))
    assert ours < robust_accuracy(model, x, y, x)  # the attack broke something


def test_apgd_t_l2_at_least_as_strong_as_pyautoattack(batch):
    pyaa = pytest.importorskip("pyautoattack.autopgd_base")
    model, x, y = batch
    result = APGDTL2(model, EPS_L2, steps=20, n_targets=3, seed=0).run(x, y)
    check_l2_result(model, x, y, result, EPS_L2)
    reference = pyaa.APGDAttack_targeted(
        model, n_iter=20, norm="L2", eps=EPS_L2, seed=0, device="cpu"
    )
    reference.n_target_classes = 3
    theirs = broken(model, x, y, reference.perturb(x, y))
    assert_not_weaker(broken(model, x, y, result.x_adv), theirs)


@pytest.mark.slow
def test_square_l2_at_least_as_strong_as_pyautoattack(batch):
    """300 queries: at fewer, both are a coin toss a few points wide."""
    pyaa = pytest.importorskip("pyautoattack.square")
    model, x, y = batch
    eps = 1.0
    result = SquareL2(model, eps, n_queries=300, seed=0).run(x, y)
    assert result.backward == 0
    ours = check_l2_result(model, x, y, result, eps)
    reference = pyaa.SquareAttack(
        model,
        norm="L2",
        n_queries=300,
        eps=eps,
        p_init=0.8,
        seed=0,
        device="cpu",
        resc_schedule=True,
    )
    assert_not_weaker(
        broken(model, x, y, result.x_adv), broken(model, x, y, reference.perturb(x, y))
    )
    assert ours < robust_accuracy(model, x, y, x)
