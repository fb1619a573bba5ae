"""advscale's attacks against the reference implementations (torchattacks, Foolbox 3, ART).

Same model, same batch: FGSM must agree to float precision; PGD must be at least as strong as
torchattacks' PGD, and APGD-CE at least as strong as PGD.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from advscale.attacks import APGD, FGSM, PGD

EPS = 8 / 255


def robust_accuracy(model, x, y, x_adv) -> float:
    """Share of examples correct on the clean image and on the adversarial one."""
    with torch.no_grad():
        clean = model(x).argmax(1) == y
        adv = model(x_adv).argmax(1) == y
    return float((clean & adv).float().mean())


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
    assert ours <= robust_accuracy(model, x, y, theirs)
    # Robust accuracy from the returned images equals the one from the fooled flags.
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    assert ours == pytest.approx(float((clean & ~result.fooled).float().mean()))


def test_apgd_ce_at_least_as_strong_as_pgd(batch):
    model, x, y = batch
    eps = 2 / 255  # where robust accuracy is neither 0 nor clean accuracy, so the order shows
    pgd = PGD(model, eps, steps=10, alpha=eps / 4, seed=0)(x, y)
    apgd = APGD(model, eps, steps=20, seed=0)(x, y)
    assert robust_accuracy(model, x, y, apgd) <= robust_accuracy(model, x, y, pgd)
