"""`grade list`: the bank as a table or JSON (no sympy needed)."""
from __future__ import annotations

import json

from grader.index import Summary


def listing(exercises: list[Summary], fmt: str) -> str:
    if fmt == "json":
        items = [{
            "id": e.id,
            "title": e.title,
            "kind": e.kind,
            "points": e.points,
            "params": sorted(e.params),
            "tags": e.tags,
        } for e in exercises]
        return json.dumps(items, indent=2, ensure_ascii=False) + "\n"
    rows = [(e.id, e.kind, f"{e.points:g}", "yes" if e.params else "", e.title) for e in exercises]
    header = ("id", "kind", "points", "varies", "title")
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  " + header[4]]
    lines.append("  ".join("-" * w for w in widths) + "  " + "-----")
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4] for r in rows]
    lines.append(f"\n{len(rows)} exercises, {sum(e.points for e in exercises):g} points")
    return "\n".join(lines) + "\n"
