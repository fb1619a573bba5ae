"""``evaluate(keep_examples=k)``: a few examples per attack × ε that the attack really broke."""

from __future__ import annotations

import torch

from advscale.evaluate import evaluate
from advscale.evaluate.examples import save_examples


def test_kept_examples_are_broken_by_their_attack_within_eps(tiny_model, test_set, tmp_path):
    report = evaluate(
        tiny_model,
        test_set,
        attacks=["fgsm", "pgd"],
        eps=[2, 8],
        cascade=True,
        attack_kwargs={"pgd": {"steps": 5}},
        keep_examples=3,
        progress=False,
        fuse=False,
    )
    ex = report.examples
    assert ex is not None and ex.attacks == ["fgsm", "pgd"] and len(ex) > 0
    x, y = test_set.tensors()
    assert torch.equal(ex.x, x[ex.index]) and torch.equal(ex.y, y[ex.index])
    assert (ex.x_adv - ex.x).abs().amax((1, 2, 3)).le(ex.eps / 255 + 1e-6).all()
    with torch.no_grad():
        assert torch.equal(tiny_model(ex.x_adv).argmax(1), ex.pred)
    assert (ex.pred != ex.y).all()
    for a, name in enumerate(ex.attacks):
        for e in (2.0, 8.0):
            rows = ((ex.attack == a) & (ex.eps == e)).nonzero().squeeze(1)
            assert len(rows) <= 3
            # With a cascade, PGD's examples are those FGSM left robust and PGD broke.
            before = report.clean_mask if a == 0 else report.robust_mask[(ex.attacks[a - 1], e)]
            broke = before & ~report.robust_mask[(name, e)]
            assert broke[ex.index[rows]].all()
            if broke.sum() >= 3 and name == "fgsm":  # a deterministic attack breaks them again
                assert len(rows) == 3
    path = save_examples(ex, tmp_path / "adv" / "examples.safetensors", classes=test_set.classes)
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(path))["x_adv"], ex.x_adv)
    # Without keep_examples nothing is kept (and nothing re-attacked).
    assert (
        evaluate(tiny_model, test_set, attacks=["fgsm"], eps=[8], progress=False).examples is None
    )
