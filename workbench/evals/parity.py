"""Adapter-vs-merged parity: the same prompts, greedy, through base+adapter and through the merged model,
and where the two disagree (users report that they do: the merge writes fp16, the adapter runs in fp32).

Both sides go through the sweep (so their replies are cached like any other) and are scored the same way;
the report lists every prompt whose replies differ, with the first character where they part.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from workbench.errors import BadInput
from workbench.evals.results import Row


@dataclass
class ParityItem:
    id: str
    prompt: str
    adapter: str
    merged: str
    first_difference: int  # character index where the replies part
    adapter_passed: bool
    merged_passed: bool


@dataclass
class ParityReport:
    adapter: str
    merged: str
    base: str | None
    n: int
    identical: int
    differing: list[ParityItem] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        return round(self.identical / self.n, 4) if self.n else 1.0

    def to_dict(self) -> dict:
        return {
            "schema": "workbench.eval.parity/1", "adapter": self.adapter, "merged": self.merged, "base": self.base,
            "n": self.n, "identical": self.identical, "agreement": self.agreement, "warnings": self.warnings,
            "scores": [r.to_dict(items=False) for r in self.rows],
            "differing": [asdict(d) for d in self.differing],
        }


def first_difference(a: str, b: str) -> int:
    """Index of the first character where `a` and `b` differ (the shorter length if one extends the other)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def compare(adapter_row: Row, merged_row: Row, adapter: str, merged: str, base: str | None) -> ParityReport:
    """Compare two scored rows of the same items, item by item."""
    merged_by_id = {s.id: s for s in merged_row.items}
    report = ParityReport(adapter, merged, base, 0, 0, rows=[adapter_row, merged_row])
    for a in adapter_row.items:
        m = merged_by_id.get(a.id)
        if m is None:
            continue
        report.n += 1
        if a.response == m.response:
            report.identical += 1
        else:
            report.differing.append(ParityItem(a.id, a.prompt, a.response, m.response,
                                               first_difference(a.response, m.response), a.passed, m.passed))
    return report


def parity_report(adapter: str, merged: str, req, progress=None, log=None) -> ParityReport:
    """Run `req`'s eval prompts through base+`adapter` and through `merged` (greedy) and compare."""
    from dataclasses import replace

    from workbench.evals.evaluate import eval_settings, load_evalsets, resolve_targets, resolve_vars
    from workbench.evals.results import MERGED, Target
    from workbench.evals.sweep import Plan, generate, score
    from workbench.models.base import settings_options
    from workbench.models.templates import resolve_format

    if not Path(merged).is_dir():
        raise BadInput(f"--parity: merged model {merged}: not a folder")
    res = resolve_targets(replace(req, adapters=[adapter], run=None, checkpoints=None, merged=()))
    ad_target = res.targets[-1]
    variables = resolve_vars(res, log or (lambda _m: None))
    evalset, _ = load_evalsets(req.evalsets, variables)
    resolved = resolve_format(req.template, req.system, res.config, res.base)
    m_target = Target("merged", MERGED, str(merged))
    options = {**settings_options(req.backend, req.settings), **req.backend_options, "trust_remote_code": res.trust}
    plan = Plan(res.base, [ad_target, m_target], [resolved.format], list(evalset.items), eval_settings(req), req.backend,
                options, req.batch_size, req.use_cache)
    rows = score(generate(plan, progress, log), plan.items)
    report = compare(rows[0], rows[1], str(adapter), str(merged), res.base)
    if resolved.warning:
        report.warnings.append(resolved.warning)
    return report


def render(report: ParityReport, fmt: str) -> str:
    """The parity report as table, json, csv (one line per differing prompt), md or junit."""
    if fmt == "json":
        return json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["id", "prompt", "adapter", "merged", "first_difference", "adapter_passed", "merged_passed"])
        for d in report.differing:
            w.writerow([d.id, d.prompt, d.adapter, d.merged, d.first_difference, d.adapter_passed, d.merged_passed])
        return buf.getvalue()
    if fmt == "junit":
        suite = ET.Element("testsuite", name="workbench-eval-parity", tests=str(report.n),
                           failures=str(len(report.differing)), errors="0")
        for d in report.differing:
            case = ET.SubElement(suite, "testcase", classname="parity", name=d.id)
            msg = f"adapter {d.adapter!r} != merged {d.merged!r} (from character {d.first_difference})"
            ET.SubElement(case, "failure", message=msg, type="parity").text = msg
        root = ET.Element("testsuites")
        root.append(suite)
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
    a, m = report.rows[0].agg, report.rows[1].agg
    lines = [
        f"adapter: {report.adapter}", f"merged:  {report.merged}", f"base:    {report.base}",
        *[f"warning: {w}" for w in report.warnings],
        f"identical replies: {report.identical}/{report.n} ({report.agreement:.2%})",
        f"adapter: identity {a.identity or 0:.2f}  general {a.general or 0:.2f}  leak {a.leak or 0:.2f}",
        f"merged:  identity {m.identity or 0:.2f}  general {m.general or 0:.2f}  leak {m.leak or 0:.2f}",
    ]
    if fmt == "md":
        out = ["## workbench eval --parity", "", *[f"- {ln}" for ln in lines], ""]
        if report.differing:
            out += ["| id | prompt | adapter | merged | from char |", "|---|---|---|---|---|"]
            out += [f"| {d.id} | {d.prompt} | {d.adapter} | {d.merged} | {d.first_difference} |".replace("\n", " ")
                    for d in report.differing]
        return "\n".join(out) + "\n"
    if report.differing:
        lines += ["", "differing prompts:"]
        for d in report.differing:
            lines += [f"  {d.id}  {d.prompt}", f"    adapter: {d.adapter!r}", f"    merged:  {d.merged!r}",
                      f"    (from character {d.first_difference})"]
    return "\n".join(lines) + "\n"
