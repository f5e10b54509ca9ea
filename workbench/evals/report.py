"""Rendering an eval: the forgetting-curve table, JSON (the machine contract, docs/eval.md), CSV, Markdown
and JUnit XML. Pure functions from an `EvalReport` to text; the plot is in `plot.py`."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

from workbench.evals.gates import GateResult
from workbench.evals.results import Row
from workbench.evals.verdict import Verdict

SCHEMA = "workbench.eval/1"
FORMATS = ("table", "json", "csv", "md", "junit")
COLUMNS = ("identity", "general", "general_vs_base", "leak", "loop", "distinct")


@dataclass
class EvalReport:
    """Everything one `workbench eval` found. `meta` keys: source, model, evalsets, vars, settings,
    template, training_template, backend; `warnings` are also printed on stderr."""

    rows: list[Row]
    verdict: Verdict | None = None
    meta: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    gates: list[GateResult] = field(default_factory=list)
    gate_message: str | None = None  # why the gate could not be checked (no recommended checkpoint)
    #: --compare-templates: one entry per target with each template's aggregates side by side.
    comparison: list[dict] | None = None
    plot: str | None = None

    @property
    def passed(self) -> bool:
        return self.gate_message is None and all(g.ok for g in self.gates)

    def to_dict(self, items: bool = True) -> dict:
        return {
            "schema": SCHEMA,
            "meta": self.meta,
            "warnings": self.warnings,
            "rows": [r.to_dict(items=items) for r in self.rows],
            "verdict": self.verdict.to_dict() if self.verdict else None,
            "comparison": self.comparison,
            "gates": {"passed": self.passed, "message": self.gate_message,
                      "checked": [g.to_dict() for g in self.gates]},
            "plot": self.plot,
        }


def compare_templates(rows: list[Row], training: str | None) -> list[dict]:
    """Per target, each template's aggregates side by side (for --compare-templates)."""
    out: dict[str, dict] = {}
    for r in rows:
        entry = out.setdefault(r.name, {"name": r.name, "iteration": r.iteration, "templates": {}})
        entry["templates"][r.template] = {c: getattr(r.agg, c) for c in COLUMNS}
        entry["templates"][r.template]["training"] = r.template == training
    return list(out.values())


def _fmt(v) -> str:
    if v is None:
        return ""
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _flags(report: EvalReport, row: Row) -> str:
    v = report.verdict
    if v is None:
        return ""
    marks = list(v.flags.get(row.name, []))
    if v.recommended == row.name and (report.comparison is None or row.template == report.meta.get("template")):
        marks.insert(0, "RECOMMENDED")
    return ",".join(marks)


def _paired(r: Row, key: str):
    p = r.agg.paired
    return p.get(key) if p and p.get("n") else None


def _row_cells(report: EvalReport, r: Row, with_template: bool) -> list[str]:
    cells = [r.name, _fmt(r.iteration)]
    if with_template:
        cells.append(r.template + (" (training)" if r.template == report.meta.get("training_template") else ""))
    lost, known = _paired(r, "lost"), _paired(r, "base_known")
    gained, unknown = _paired(r, "gained"), _paired(r, "base_unknown")
    p = _paired(r, "p_value")
    # The identity the verdict judges: without the languages the training data does not teach (those are transfer,
    # in the breakdown below), so the column and the verdict never disagree.
    identity = r.agg.identity_judged if r.agg.identity_judged is not None else r.agg.identity
    cells += [_fmt(identity), _fmt(r.agg.general), _fmt(r.agg.general_vs_base),
              f"{lost}/{known}" if lost is not None else "", f"{gained}/{unknown}" if gained is not None else "",
              "" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}"), _fmt(r.agg.retention),
              _fmt(r.agg.leak), _fmt(r.agg.loop), _fmt(r.agg.distinct)]
    return cells + [_flags(report, r)]


def _identity_header(report: EvalReport | None) -> str:
    """"identity", or "identity_en" when only the languages the training data teaches are judged."""
    t = (report.meta.get("training") or {}) if report is not None else {}
    judged = t.get("judged_langs") or []
    return "identity_" + "+".join(judged) if judged and t.get("transfer_langs") else "identity"


def _headers(with_template: bool, report: EvalReport | None = None) -> list[str]:
    return ["target", "iter", *(["template"] if with_template else []), _identity_header(report), "general",
            "vs_base", "lost",
            "gained", "p", "retention", "leak", "loop", "distinct", "flags"]


def _part(part: dict | None) -> str:
    if not part or not part.get("n"):
        return ""
    return f"{part['rate']:.3f} {part['passed']}/{part['n']}"


def breakdown_table(report: EvalReport, rows: list[Row]) -> list[list[str]] | None:
    """Identity (and general) per language and identity on seen / held-out prompts, one line per row, or None
    when there is nothing to split (one language and unknown training data). A language the training data does
    not teach the identity in is marked ``*`` (cross-lingual transfer, not judged)."""
    langs = sorted({lang for r in rows for lang in r.agg.by_lang})
    split = any(r.agg.identity_heldout is not None for r in rows)
    if len(langs) < 2 and not split:
        return None
    transfer = set((report.meta.get("training") or {}).get("transfer_langs") or ())
    head = ["target"] + [f"id_{x}{'*' if x in transfer else ''}" for x in langs] + [f"gen_{x}" for x in langs]
    head += ["id_seen", "id_heldout"] if split else []
    out = [head]
    for r in rows:
        bl = r.agg.by_lang
        cells = [r.name] + [_part(bl.get(x, {}).get("identity")) for x in langs]
        cells += [_part(bl.get(x, {}).get("general")) or _part(bl.get(x, {}).get("retention")) for x in langs]
        if split:
            cells += [_part(r.agg.identity_seen), _part(r.agg.identity_heldout)]
        out.append(cells)
    return out


def _breakdown_note(report: EvalReport) -> str | None:
    t = report.meta.get("training")
    if not t:
        return None
    note = f"identity judged on: {', '.join(t['judged_langs']) or 'none'} (training data: {', '.join(t['paths'])})"
    if t.get("transfer_langs"):
        note += f"; * {', '.join(t['transfer_langs'])}: not in the training data's identity, cross-lingual transfer"
    return note


def _main_rows(report: EvalReport) -> list[Row]:
    t = report.meta.get("template")
    return [r for r in report.rows if report.comparison is None or r.template == t] or report.rows


def _header_lines(report: EvalReport) -> list[str]:
    m = report.meta
    lines = []
    if m.get("model"):
        lines.append(f"model: {m['model']}")
    if m.get("evalsets"):
        lines.append("eval sets: " + ", ".join(f"{e['name']} ({e['items']})" for e in m["evalsets"]))
    if m.get("template"):
        src = f" ({m['template_source']})" if m.get("template_source") else ""
        lines.append(f"template: {m['template']}{src}")
    lines += [f"warning: {w}" for w in report.warnings]
    return lines


def to_table(report: EvalReport) -> str:
    """The forgetting curve as an aligned text table, then the verdict and the gates."""
    with_t = report.comparison is not None
    rows = [_headers(with_t, report)] + [_row_cells(report, r, with_t) for r in report.rows]
    lines = _header_lines(report) + [""]
    lines += _aligned(rows)
    split = breakdown_table(report, _main_rows(report))
    if split:
        lines += ["", "By language and by whether training saw the prompt (rate passed/n):"] + _aligned(split)
        note = _breakdown_note(report)
        if note:
            lines.append(note)
    if report.verdict:
        lines += ["", "Verdict: " + report.verdict.explanation]
    lines += _gate_lines(report)
    if report.plot:
        lines.append(f"plot: {report.plot}")
    return "\n".join(lines) + "\n"


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join((c.upper() if n == 0 else c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for n, row in enumerate(rows)]


def _gate_lines(report: EvalReport) -> list[str]:
    if not report.gates and not report.gate_message:
        return []
    lines = ["", "Gates: " + ("PASSED" if report.passed else "FAILED")]
    if report.gate_message:
        lines.append(f"  {report.gate_message}")
    lines += [f"  {g.describe()}" for g in report.gates]
    return lines


def to_json(report: EvalReport) -> str:
    return json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n"


def to_csv(report: EvalReport) -> str:
    """One line per (target, template): the aggregates, flags and whether it is the recommended one."""
    buf = io.StringIO()
    # New columns go at the end, so a script that reads columns by position keeps working.
    cols = ["name", "kind", "iteration", "template", "n_identity", "n_general", "identity", "identity_score",
            "general", "general_score", "general_vs_base", "leak", "loop", "distinct", "empty", "flags",
            "recommended", "identity_passed", "general_passed", "n_general_gold", "leaks", "retention", "retained",
            "n_retention", "base_known", "lost", "gained", "p_value", "identity_judged", "identity_seen",
            "identity_heldout", "identity_zh", "identity_en", "general_zh", "general_en"]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    v = report.verdict
    for r in report.rows:
        d = {**r.target.to_dict(), "template": r.template, **r.agg.to_dict()}
        d["flags"] = ";".join(v.flags.get(r.name, [])) if v else ""
        for k in ("base_known", "lost", "gained", "p_value"):
            d[k] = _paired(r, k)
        for k in ("identity_seen", "identity_heldout"):
            d[k] = (d.get(k) or {}).get("rate")
        for kind in ("identity", "general"):
            for lang in ("zh", "en"):
                d[f"{kind}_{lang}"] = r.agg.by_lang.get(lang, {}).get(kind, {}).get("rate")
        d["recommended"] = bool(v and v.recommended == r.name)
        w.writerow(["" if d.get(c) is None else d.get(c) for c in cols])
    return buf.getvalue()


def to_markdown(report: EvalReport) -> str:
    """A Markdown section for a report or a pull request: header, table, verdict, gates, plot."""
    with_t = report.comparison is not None
    head = _headers(with_t, report)
    lines = ["## workbench eval", ""]
    lines += [f"- {ln}" for ln in _header_lines(report)]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in report.rows:
        cells = [c.replace("|", "\\|") for c in _row_cells(report, r, with_t)]
        if r.name == (report.verdict.recommended if report.verdict else None):
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(cells) + " |")
    split = breakdown_table(report, _main_rows(report))
    if split:
        lines += ["", "By language and by whether training saw the prompt (rate passed/n):", "",
                  "| " + " | ".join(split[0]) + " |", "|" + "|".join("---" for _ in split[0]) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in split[1:]]
        note = _breakdown_note(report)
        if note:
            lines += ["", note]
    if report.verdict:
        lines += ["", f"**Verdict** ({report.verdict.status}): {report.verdict.explanation}"]
    gl = _gate_lines(report)
    if gl:
        lines += ["", f"**Gates: {'passed' if report.passed else 'FAILED'}**", ""]
        if report.gate_message:
            lines.append(f"- {report.gate_message}")
        lines += [f"- {g.describe()}" for g in report.gates]
    if report.plot:
        lines += ["", f"![forgetting curve]({report.plot})"]
    return "\n".join(lines) + "\n"


def to_junit(report: EvalReport) -> str:
    """JUnit XML for CI: one test case per threshold checked (a failure when unmet), and one passing test
    case per scored target carrying its numbers (so CI shows them without failing on single items)."""
    suite = ET.Element("testsuite", name="workbench-eval")
    if report.verdict:  # <properties> must come before the test cases
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="recommended", value=report.verdict.recommended or "")
        ET.SubElement(props, "property", name="verdict", value=report.verdict.explanation)
    failures = 0
    for g in report.gates:
        case = ET.SubElement(suite, "testcase", classname=f"gates.{g.target}", name=f"{g.metric} {g.op} {g.limit:g}")
        if not g.ok:
            failures += 1
            ET.SubElement(case, "failure", message=g.describe(), type="threshold").text = g.describe()
    if report.gate_message:
        failures += 1
        case = ET.SubElement(suite, "testcase", classname="gates", name="gated target exists")
        ET.SubElement(case, "failure", message=report.gate_message, type="threshold").text = report.gate_message
    for r in report.rows:
        case = ET.SubElement(suite, "testcase", classname=f"scores.{r.name}", name=f"{r.name} [{r.template}]")
        out = ET.SubElement(case, "system-out")
        numbers = {c: getattr(r.agg, c) for c in (*COLUMNS, "retention", "identity_passed", "n_identity",
                                                    "general_passed", "n_general_gold", "leaks", "n_general")}
        numbers["paired"] = r.agg.paired
        out.text = json.dumps(numbers, ensure_ascii=False)
    suite.set("tests", str(len(suite.findall("testcase"))))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render(report: EvalReport, fmt: str) -> str:
    """The report in one of FORMATS."""
    return {"table": to_table, "json": to_json, "csv": to_csv, "md": to_markdown, "junit": to_junit}[fmt](report)
