"""FAB-T: its exact projection, its budget and its strength against the reference FAB-T."""

import pytest
import torch

from advscale.attacks import APGD, FABT, StrongCascade, lp_norm
from advscale.attacks.fab import hyperplane_projection


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_hyperplane_projection_is_the_smallest_step_inside_the_box(norm):
    g = torch.Generator().manual_seed(0)
    p = torch.rand(64, 1, 5, 5, generator=g)
    p[p < 0.3] = 0  # pixels at the box's edge, as a dark background
    w = torch.randn(p.shape, generator=g)
    b = torch.randn(64, generator=g) * 2
    d = hyperplane_projection(p, w, b, norm)
    assert ((p + d) >= 0).all() and ((p + d) <= 1).all()
    assert torch.allclose((w * d).flatten(1).sum(1), b, atol=1e-4)
    # No feasible step on the same hyperplane is shorter: moves along it keep <w, d> = b.
    for _ in range(100):
        z = torch.randn(d.shape, generator=g) * 0.01
        z -= ((w * z).flatten(1).sum(1) / (w * w).flatten(1).sum(1)).view(-1, 1, 1, 1) * w
        inside = (((p + d + z) >= 0) & ((p + d + z) <= 1)).flatten(1).all(1)
        shorter = lp_norm(d + z, norm).flatten() < lp_norm(d, norm).flatten() - 1e-5
        assert not (inside & shorter).any()


def test_hyperplane_out_of_reach_gets_the_box_corner_nearest_to_it():
    p = torch.zeros(1, 1, 2, 2)
    w = torch.ones(1, 1, 2, 2)
    d = hyperplane_projection(p, w, torch.tensor([10.0]), "l2")  # <w, d> <= 4 in the box
    assert torch.equal(d, torch.ones_like(d))
    assert torch.equal(hyperplane_projection(p, w, torch.tensor([0.0]), "l2"), torch.zeros_like(d))


@pytest.fixture(scope="module")
def left_by_apgd(trained):
    """L2 ε = 1.0: the points APGD-CE (25 steps) leaves robust on the tiny model."""
    x, y = trained.x[:200], trained.y[:200]
    r = APGD(trained.model, 1.0, norm="l2", steps=25, seed=0).run(x, y)
    left = trained.clean_correct[:200] & ~r.fooled
    assert left.sum() >= 10
    return x[left], y[left]


def test_fab_t_finds_boundary_points_within_eps(trained, left_by_apgd):
    x, y = left_by_apgd
    r = FABT(trained.model, 1.0, norm="l2", n_targets=3, steps=30, seed=0).run(x, y)
    assert r.fooled.any()
    with torch.no_grad():
        assert (trained.model(r.x_adv[r.fooled]).argmax(1) != y[r.fooled]).all()
    assert (lp_norm(r.x_adv - x, "l2").flatten() <= 1.0 + 1e-5).all()
    assert torch.equal(r.x_adv[~r.fooled], x[~r.fooled])
    # per point and iteration: a gradient and a forward pass at the step, as the reference;
    # plus the clean ranking of the targets
    assert r.backward <= 3 * 30 * len(x) and r.forward == 2 * r.backward + len(x)


def test_fab_t_is_as_strong_as_the_reference_fab_t(trained, left_by_apgd):
    fab_pt = pytest.importorskip("pyautoattack.fab_pt")
    x, y = left_by_apgd
    ours = FABT(trained.model, 1.0, norm="l2", n_targets=3, steps=30, seed=0).run(x, y).fooled
    ref = fab_pt.FABAttack_PT(
        trained.model, n_restarts=1, n_iter=30, eps=1.0, seed=0, norm="L2", device="cpu"
    )
    ref.targeted, ref.n_target_classes = True, 3
    x_ref = ref.perturb(x, y)
    with torch.no_grad():
        theirs = (trained.model(x_ref).argmax(1) != y) & (
            lp_norm(x_ref - x, "l2").flatten() <= 1.0 + 1e-5
        )
    assert ours.sum() >= theirs.sum(), (int(ours.sum()), int(theirs.sum()))


def test_strong_preset_runs_fab_t_in_l2_only(trained, left_by_apgd):
    x, y = left_by_apgd  # points a short APGD leaves: the cascade reaches its later stages
    kw = {"ce_steps": 5, "t_steps": 4, "n_targets": 2, "fab_steps": 5, "square_queries": 10}
    l2 = StrongCascade(trained.model, 1.0, norm="l2", seed=0, **kw)
    l2.run(x, y)
    names = [s["attack"] for s in l2.stages]
    assert names[:3] == ["apgd_ce", "apgd_t", "fab_t"]
    fab = l2.stages[2]
    assert fab["attacked"] == l2.stages[1]["attacked"] - l2.stages[1]["fooled"]
    assert fab["backward"] > 0 and "fab_t=9x5" in repr(l2)
    linf = StrongCascade(trained.model, 8 / 255, seed=0, **kw)
    linf.run(x, y)
    assert linf.fab is None and "fab_t" not in [s["attack"] for s in linf.stages]
    assert StrongCascade(trained.model, 8 / 255, fab_targets=2).fab.n_targets == 2
