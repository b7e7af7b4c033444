"""The forget benchmark's result (`benchmarks.studies.forget_bench.run`) as a Markdown report: the six-way
table, then scalability and, when measured, sustainability.
"""

from __future__ import annotations

import math


def _cell(value) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def markdown(result: dict) -> str:
    """The six-way table (one row per method, `before` first), then scalability and sustainability."""
    six = [
        ("method", "method"),
        ("VerbMem ↓", "verbmem"),
        ("KnowMem ↓", "knowmem"),
        ("MIA AUC", "mia_auc"),
        ("PrivLeak % (ref 0.5)", "privleak_pct"),
        ("locality kept ↑", "locality_kept"),
        ("held-aside kept ↑", "held_kept"),
        ("neighbours kept ↑", "neighbour_kept"),
        ("steps", "steps"),
        ("s", "seconds"),
    ]
    lines = ["| " + " | ".join(h for h, _ in six) + " |", "|" + "---|" * len(six)] if result["six"] else []
    lines += ["| " + " | ".join(_cell(r.get(k, "")) for _, k in six) + " |" for r in result["six"]]
    lines += [
        "",
        "Scalability (one run forgetting this many facts at once; the larger run on its own facts):",
        "",
        "| method | requests | steps | s | s/step | VerbMem ↓ | held-aside kept ↑ | locality kept ↑ | neighbours kept ↑ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['method']} | {r['requests']} | {r['steps']} | {r['seconds']} | {r['s_per_step']} | "
        f"{_cell(r['verbmem'])} | {_cell(r['held_kept'])} | {_cell(r['locality_kept'])} | "
        f"{_cell(r['neighbour_kept'])} |"
        for r in result["scale"]
    ]
    if result.get("scale_before"):
        b = result["scale_before"]
        lines += [
            "",
            f"Before the larger run: VerbMem {_cell(b['verbmem'])} on its {result['scale_requested']} facts; "
            f"kept columns of {b['held_n']} held-aside, {b['locality_n']} locality probes and "
            f"{b['neighbour_n']} neighbourhood prompts answered before.",
        ]
    if not result["sequential"]:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "Sustainability (the same facts arriving as requests one by one, measured after the last):",
        "",
        "| method | requests × facts | s | VerbMem ↓ | KnowMem ↓ | MIA AUC | locality kept ↑ | held-aside kept ↑ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['method']} | {r['requests']} × {r['facts_per_request']} | {r['seconds']} | {_cell(r['verbmem'])} | "
        f"{_cell(r['knowmem'])} | {_cell(r['mia_auc'])} | {_cell(r['locality_kept'])} | {_cell(r['held_kept'])} |"
        for r in result["sequential"]
    ]
    return "\n".join(lines) + "\n"


__all__ = ["markdown"]
