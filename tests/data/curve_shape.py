"""What must hold, on every CPU, thread count and seed, for the tiny world's identity-only overfit run
(workbench/configs/tiny_cpu_overfit.py) swept by `workbench eval`. Shared by tests/data/test_tiny_curves.py and
bench/curve_matrix.py (which runs it over threads x seeds)."""

from __future__ import annotations


def curve_text(report: dict) -> str:
    return "; ".join(f"{r['name']} {r['identity']:.2f}/{r['general']:.2f}/{r['leak']:.2f}" for r in report["rows"])


def overfit_curve_problems(report: dict) -> list[str]:
    """The ways `report` (the JSON of `workbench eval` over base + every checkpoint) misses the overfit curve's shape:
    the base knows its facts and not the identity; some early checkpoint takes on part of the identity while
    general knowledge holds and the verdict picks one of those (or, when none exists, recommends nothing and
    names the remedy); the last checkpoint has learned the identity by breaking general knowledge and leaks it."""
    rows = {r["name"]: r for r in report["rows"]}
    base, last = rows["base"], report["rows"][-1]
    verdict = report["verdict"]
    problems = []
    if not (base["identity"] == 0 and base["general"] >= 0.9):
        problems.append(f"base identity {base['identity']} / general {base['general']}")
    keeps = [n for n, r in rows.items() if n != "base" and r["identity"] >= 0.5
             and r["general"] >= base["general"] - 0.06 and r["leak"] <= 0.06]
    if keeps and verdict["recommended"] not in keeps:
        problems.append(f"recommended {verdict['recommended']}, not one of {keeps}")
    if not keeps and (verdict["recommended"] is not None or "mix general data" not in verdict["explanation"]):
        problems.append(f"no checkpoint keeps both, yet the verdict says: {verdict['explanation']}")
    if last["identity"] < 0.8:
        problems.append(f"last checkpoint identity {last['identity']} < 0.8")
    if last["general"] > base["general"] - 0.25:
        problems.append(f"last checkpoint general {last['general']} not broken (base {base['general']})")
    if last["leak"] < 0.2:
        problems.append(f"last checkpoint leak {last['leak']} < 0.2")
    if "forgetting" not in verdict["flags"].get(last["name"], []):
        problems.append(f"last checkpoint not flagged forgetting: {verdict['flags'].get(last['name'])}")
    return problems
