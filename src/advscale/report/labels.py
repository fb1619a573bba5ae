"""What a reader sees in place of field and attack names: column headers with units, attack
names as the papers write them."""

from __future__ import annotations

# Attack names as the papers and the README write them.
ATTACK_NAMES = {
    "clean": "clean",
    "fgsm": "FGSM",
    "fgsm_pred": "FGSM-pred",
    "step_ll": "step l.l.",
    "step_rnd": "step rnd",
    "fgm_l2": "fast gradient L2",
    "random_sign": "random sign",
    "iter_basic": "iter. basic",
    "iter_ll": "iter. l.l.",
    "pgd": "PGD",
    "pgd_l2": "PGD L2",
    "apgd": "APGD",
    "apgd_ce": "APGD-CE",
    "apgd_dlr": "APGD-DLR",
    "apgd_t": "APGD-T",
    "square": "Square",
    "worst_case": "worst case",
}

# One-step attacks: a worst case over these alone bounds robustness from above, it is no
# robustness figure (iterative attacks break what they miss).
ONE_STEP = ("fgsm", "fgsm_pred", "step_ll", "step_rnd", "fgm_l2", "random_sign")

# Headers of fields whose name does not say it plainly.
COLUMNS = {
    "run": "run",
    "eps": "ε",
    "train_eps": "training ε",
    "eval_eps": "evaluation ε",
    "clean_accuracy": "clean acc. (%)",
    "accuracy": "accuracy (%)",
    "accuracy_final": "acc. on returned examples (%)",
    "robust_accuracy": "robust acc. (%)",
    "top5": "top-5 acc. (%)",
    "clean_top5": "clean top-5 (%)",
    "leaked": "FGSM right, FGSM-pred wrong (%)",
    "leak_effect": "FGSM − best control (points)",
    "leak_p_value": "leak p-value",
    "prefers_perturbed": "prefers perturbed?",
    "random_sign_accuracy": "random ±ε acc. (%)",
    "leak": "label leak?",
    "co_events": "catastrophic overfitting events",
    "co_epochs": "overfitting at epoch",
    "wall_time_s": "training time (s)",
    "train_time_s": "training time (s)",
    "time_per_epoch_s": "time per epoch (s)",
    "time_s": "time (s)",
    "seconds": "time (s)",
    "time_ratio": "time / cheapest",
    "images_per_s": "images/s",
    "forward": "forward passes",
    "backward": "backward passes",
    "trainable_params": "trainable parameters",
    "total_params": "parameters",
    "stopped_early": "stopped early?",
    "stop_reason": "stop reason",
    "train_loss": "training loss",
    "train_acc": "training acc. (%)",
    "val_acc": "validation acc. (%)",
    "lr": "learning rate",
    "ratio": "adv. / clean acc.",
    "fast": "fast method",
    "slow": "multi-step method",
    "fast_co_events": "fast method's overfitting events",
    "robust_accuracy_gap_points": "robust gap (points)",
    "pgd_accuracy_gap_points": "PGD-acc. gap (points)",
    "apgd_accuracy_gap_points": "APGD-acc. gap (points)",
    "clean_accuracy_gap_points": "clean gap (points)",
    "attack_type": "attack type",
    "transfer_rate": "transfer rate (%)",
    "error_rate": "target error rate (%)",
    "guard_clean_acc": "guard: clean acc. (%)",
    "guard_fgsm_acc": "guard: FGSM acc. (%)",
    "guard_pgd_acc": "guard: PGD acc. (%)",
}


def attack_label(name: str) -> str:
    """``"iter_ll"`` -> ``"iter. l.l."``; unknown names are shown as they are."""
    return ATTACK_NAMES.get(name, name)


def column_label(key: str) -> str:
    """A column header for field ``key``, with its unit: ``fgsm_pred_accuracy`` ->
    ``FGSM-pred acc. (%)``, ``eval_eps`` -> ``evaluation ε``."""
    if key in COLUMNS:
        return COLUMNS[key]
    for suffix, unit in (("_accuracy", "acc. (%)"), ("_acc", "acc. (%)")):
        if key.endswith(suffix) and key[: -len(suffix)] in ATTACK_NAMES:
            return f"{attack_label(key[: -len(suffix)])} {unit}"
    if key.endswith("_gap_points"):
        return f"{key[: -len('_gap_points')].replace('_', ' ')} gap (points)"
    if key.endswith("_s") and not key.endswith("per_s"):
        return f"{key[:-2].replace('_', ' ')} (s)"
    return key.replace("_", " ")


def covers_multi_step(attacks: list[str] | tuple[str, ...]) -> bool:
    """Whether a worst case over ``attacks`` includes an iterative (multi-step) attack."""
    return any(a not in ONE_STEP for a in attacks)


def attack_list(attacks: list[str] | tuple[str, ...], short: int = 4) -> str:
    """``["fgsm", "pgd"]`` -> ``"FGSM, PGD"``; more than ``short`` attacks are summed up by
    their iterative ones: ``"PGD, APGD + 6 one-step"``."""
    if len(attacks) <= short:
        return ", ".join(attack_label(a) for a in attacks)
    multi = [attack_label(a) for a in attacks if a not in ONE_STEP]
    one = len(attacks) - len(multi)
    return ", ".join(multi) + (f" + {one} one-step" if one else "")
