"""The forgetting curve as a PNG for reports: identity, general and leak per iteration, the tolerance band
under the base's general score, and the recommended checkpoint marked. matplotlib is imported here only
(headless Agg backend), so nothing else pays for it."""

from __future__ import annotations

import io
from pathlib import Path

from workbench import atomic
from workbench.errors import BadInput
from workbench.evals.results import Row
from workbench.evals.verdict import Verdict


def plot_curve(rows: list[Row], verdict: Verdict | None, path: str | Path, title: str = "") -> Path:
    """Write the curve of `rows` (one template) to `path` atomically; returns the path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BadInput("--plot needs matplotlib (pip install matplotlib)") from None
    pts = [r for r in rows if r.is_base or r.iteration is not None]
    if not pts:  # adapters without iterations: plot them in order
        pts = rows
    xs = [0 if r.is_base else (r.iteration if r.iteration is not None else i) for i, r in enumerate(pts)]
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=110)
    for key, label, style in (("identity", "identity pass", "-o"), ("general", "general pass", "-s"),
                              ("leak", "leak", "--^")):
        ys = [getattr(r.agg, key) for r in pts]
        ax.plot(xs, [float("nan") if y is None else y for y in ys], style, label=label, linewidth=1.8, markersize=4)
    if verdict and verdict.reference_general is not None:
        floor = verdict.reference_general - verdict.tolerance
        ax.axhline(floor, color="grey", linestyle=":", linewidth=1)
        ax.text(xs[0], floor, f" base general - {verdict.tolerance:.2f}", va="top", ha="left", fontsize=8,
                color="grey")
    if verdict and verdict.recommended_iteration is not None:
        ax.axvline(verdict.recommended_iteration, color="green", alpha=0.4, linewidth=6)
        ax.text(verdict.recommended_iteration, 1.02, "recommended", ha="center", fontsize=8, color="green")
    for r, x in zip(pts, xs, strict=True):
        if verdict and "collapsed" in verdict.flags.get(r.name, []):
            ax.annotate("collapsed", (x, r.agg.general or 0), textcoords="offset points", xytext=(0, -14),
                        ha="center", fontsize=7, color="red")
    ax.set_ylim(-0.03, 1.08)
    ax.set_xlabel("iteration (0 = base)")
    ax.set_ylabel("rate")
    ax.set_title(title or "Forgetting curve")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic.write_bytes(path, buf.getvalue())
