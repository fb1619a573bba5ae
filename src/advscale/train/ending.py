"""The end of a training run: which weights become the model, its evaluation, the summary.

:meth:`Trainer.finish <advscale.train.loop.Trainer.finish>` runs :func:`finish_run`; every
process takes part (the evaluation is shared), process 0 writes.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from advscale.train import checkpoint as ckpt
from advscale.train.distributed import barrier
from advscale.train.evaluation import final_records, label_leak_rows
from advscale.train.rundir import CHECKPOINTS, MODEL, RESULTS, SUMMARY
from advscale.train.summary import build_summary, write_results
from advscale.utils import atomic_write_json


def final_model(trainer: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The model a finished run saves as ``model.safetensors`` and evaluates, and where its
    weights come from: ``weights`` is ``last`` (the raw weights at the last step), ``ema`` (their
    moving average at the last step) or ``best`` (``checkpoints/best.safetensors``, the best by ``metric``
    at ``step``, the moving average when ``average``)."""
    model = trainer.eval_model()
    kind = "ema" if trainer.opt.ema is not None else "last"
    sel = trainer.selector
    if sel is None or sel.best_step < 0:
        return model, {"weights": kind, "step": trainer.step}
    barrier(trainer.dist)  # process 0 wrote checkpoints/best
    ckpt.load_weights(model, trainer.out / CHECKPOINTS / "best")
    return model, {
        "weights": "best",
        "average": kind == "ema",
        "step": sel.best_step,
        "metric": trainer.cfg.select.metric,
        "value": sel.best,
    }


def finish_run(trainer: Any) -> dict[str, Any]:
    """Write the model, evaluate it, write summary.json and results.json; return the summary."""
    t = trainer
    cfg, d = t.cfg, t.dist
    model, source = t.final_model()
    if d.is_main:
        ckpt.save_weights(
            model,
            t.out / MODEL,
            recipe=cfg.recipe.name,
            eps=cfg.recipe.eps,
            step=t.step,
            weights_from=source["weights"],
            weights_step=source["step"],
            classes=t.data.classes,
            **t.data.model_meta(cfg.data),
        )
    eval_set = t.data.val.take(cfg.eval.n, seed=cfg.seed + 4)
    eval_records = final_records(model, eval_set, cfg, d)
    leak = None
    if cfg.label_leak_enabled() and d.is_main:
        leak, events, note = label_leak_rows(model, eval_set, cfg, t.step)
        t.events += events
        t.notes += [note] if note else []
    barrier(d)
    summary = build_summary(
        cfg,
        eval_records,
        t.progress(),
        world_size=d.world_size,
        label_leak=leak,
        guard=t.guard.history if t.guard is not None else None,
        model_path=t.out / "model.safetensors",
        notes=t.notes,
    )
    summary["model_weights"] = source
    summary.update(t.extra_summary())
    if d.is_main:
        atomic_write_json(t.out / SUMMARY, summary)
        write_results(
            t.out / RESULTS,
            t.results_kind,
            cfg,
            t.records,
            d.device,
            eval_records=eval_records,
            summary=summary,
        )
        numbers = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
        t.log({"type": "final", "step": t.step, **numbers})
    return summary
