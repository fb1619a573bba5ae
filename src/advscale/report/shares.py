"""Shares of one sweep run on several machines (``advscale sweep --shard I/N``), reported as the
one sweep they are parts of.

Each share's ``results.json`` (kind "sweep") records ``config.shard = {index, count, points}``;
shares whose configs agree otherwise (the output path and sweep file aside, which may differ
between machines) are merged: their records in the sweep's own order (variants, then values),
the point counts summed, and the sweep marked incomplete, naming the missing shares, until all
N are there.
"""

from __future__ import annotations

import json
from typing import Any

from advscale.results import Results

# Config keys that may differ between the shares of one sweep.
LOCAL_KEYS = ("shard", "out", "sweep_file")


def _identity(cfg: dict[str, Any]) -> str:
    same = {k: v for k, v in cfg.items() if k not in LOCAL_KEYS}
    return json.dumps({**same, "count": cfg["shard"].get("count")}, sort_keys=True, default=str)


def is_share(results: Results) -> bool:
    cfg = results.config if isinstance(results.config, dict) else {}
    return results.kind == "sweep" and isinstance(cfg.get("shard"), dict)


def merge_shares(shares: list[Results]) -> Results:
    """One sweep's results from some or all of its shares (all of the same sweep)."""
    cfg = dict(shares[0].config)
    count = int(cfg["shard"]["count"])
    present = sorted({int(s.config["shard"]["index"]) for s in shares})
    missing = [i for i in range(1, count + 1) if i not in present]
    variants = list(cfg.get("variants") or [])
    values = [json.dumps(v) for v in cfg.get("values") or []]

    def order(r: dict[str, Any]) -> tuple[int, int]:
        v, x = r.get("variant"), json.dumps(r.get("value"))
        return (variants.index(v) if v in variants else len(variants)), (
            values.index(x) if x in values else len(values)
        )

    records = sorted((r for s in shares for r in s.records), key=order)
    sums = {k: sum(int(s.summary.get(k) or 0) for s in shares) for k in ("done", "failed")}
    summary: dict[str, Any] = {
        "points": int(
            cfg["shard"].get("points") or sum(s.summary.get("points", 0) for s in shares)
        ),
        **sums,
        "errors": [e for s in shares for e in s.summary.get("errors") or []],
        "warnings": [w for s in shares for w in s.summary.get("warnings") or []],
        "shards": f"{len(present)} of {count}",
    }
    if missing:
        summary["missing_shards"] = [f"{i}/{count}" for i in missing]
    cfg.pop("shard")
    cfg["shards"] = {"count": count, "present": present}
    return Results(
        "sweep",
        records=records,
        config=cfg,
        summary=summary,
        environment=shares[0].environment,
        complete=not missing and all(s.complete for s in shares),
    )


def group_shares(items: list[Any], results_of: Any) -> list[tuple[Any, list[Any]]]:
    """``items`` in order, those whose ``results_of(item)`` is a share grouped by sweep: a list of
    ``(first item, [items of the same sweep])``, one entry per non-share item or sweep."""
    groups: dict[str, list[Any]] = {}
    out: list[tuple[Any, list[Any]]] = []
    for item in items:
        res = results_of(item)
        if not is_share(res):
            out.append((item, [item]))
            continue
        key = _identity(res.config)
        if key not in groups:
            groups[key] = []
            out.append((item, groups[key]))
        groups[key].append(item)
    return out
