"""`grade list`: the bank as a table or JSON (no sympy needed)."""
from __future__ import annotations

import json

from grader.bank import Entry


def listing(entries: list[Entry], fmt: str) -> str:
    if fmt == "json":
        items = [{
            "id": e.exercise.id,
            "title": e.exercise.title,
            "kind": e.exercise.kind,
            "points": e.exercise.points,
            "params": sorted(e.exercise.params),
            "tags": e.exercise.tags,
        } for e in entries]
        return json.dumps(items, indent=2, ensure_ascii=False) + "\n"
    rows = [(e.exercise.id, e.exercise.kind, f"{e.exercise.points:g}", "yes" if e.exercise.params else "", e.exercise.title) for e in entries]
    header = ("id", "kind", "points", "varies", "title")
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  " + header[4]]
    lines.append("  ".join("-" * w for w in widths) + "  " + "-----")
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4] for r in rows]
    lines.append(f"\n{len(rows)} exercises, {sum(e.exercise.points for e in entries):g} points")
    return "\n".join(lines) + "\n"
