"""CI gates: ``--fail-under identity=0.9,general=0.95`` and ``--max leak=0.05``, checked on one row.

Which row: ``--gate recommended`` (the verdict's pick, the default when several checkpoints are scored),
``last`` (the latest checkpoint), ``all`` (every scored target but the base), or a target name
(``iter_20``). With a single target besides the base, that target.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from workbench.errors import BadInput
from workbench.evals.results import Row

#: Metrics a --fail-under can name (higher is better) and a --max can name (lower is better).
FAIL_UNDER_METRICS = ("identity", "general", "general_vs_base", "identity_score", "general_score", "distinct")
MAX_METRICS = ("leak", "loop", "empty")


@dataclass
class GateResult:
    target: str
    metric: str
    op: str  # ">=" or "<="
    limit: float
    value: float | None
    ok: bool

    def describe(self) -> str:
        value = "n/a" if self.value is None else f"{self.value:.4f}"
        return f"{self.target}: {self.metric} {value} {'meets' if self.ok else 'FAILS'} {self.op} {self.limit:g}"

    def to_dict(self) -> dict:
        return asdict(self)


def parse(text: str | None, flag: str, allowed: tuple[str, ...]) -> dict[str, float]:
    """Parse ``metric=value,metric=value``; anything else is a one-line `BadInput` naming the flag."""
    out: dict[str, float] = {}
    if not text:
        return out
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise BadInput(f"{flag} {text!r}: expected metric=value, got {part!r}")
        if name not in allowed:
            raise BadInput(f"{flag} {text!r}: unknown metric {name!r} (choose from {', '.join(allowed)})")
        try:
            number = float(value)
        except ValueError:
            raise BadInput(f"{flag} {text!r}: {value.strip()!r} is not a number") from None
        if not number >= 0 or number != number or number == float("inf"):
            raise BadInput(f"{flag} {text!r}: {name} must be a finite number >= 0")
        out[name] = number
    return out


def gated_rows(rows: list[Row], gate: str, recommended: str | None) -> list[Row] | str:
    """The rows a gate applies to, or a message saying why there is none."""
    cands = [r for r in rows if not r.is_base] or rows
    if gate == "all":
        return cands
    if gate == "last":
        with_iter = [r for r in cands if r.iteration is not None]
        return [max(with_iter, key=lambda r: r.iteration or 0)] if with_iter else [cands[-1]]
    if gate == "recommended":
        if len(cands) == 1:
            return cands
        if recommended is None:
            return "no checkpoint is recommended (see the verdict), so the gate has nothing to pass"
        return [r for r in cands if r.name == recommended][:1]
    named = [r for r in rows if r.name == gate]
    if not named:
        raise BadInput(f"--gate {gate!r}: no such target (scored: {', '.join(dict.fromkeys(r.name for r in rows))})")
    return named


def check(rows: list[Row], fail_under: dict[str, float], maxes: dict[str, float]) -> list[GateResult]:
    """Every threshold against every given row."""
    results = []
    for r in rows:
        agg = r.agg.to_dict()
        for metric, limit in fail_under.items():
            v = agg.get(metric)
            results.append(GateResult(r.name, metric, ">=", limit, v, v is not None and v >= limit - 1e-12))
        for metric, limit in maxes.items():
            v = agg.get(metric)
            results.append(GateResult(r.name, metric, "<=", limit, v, v is not None and v <= limit + 1e-12))
    return results
