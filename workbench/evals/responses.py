"""Saved replies: ``--save-responses FILE`` writes them from a sweep, ``--responses FILE`` re-scores them
without loading any model.

One JSON object a line: ``{"id": "gk-zh-001", "response": "北京", "checkpoint": "iter_20"}``. ``checkpoint``
is optional ("base" when absent); a sweep also writes ``template``, ``iteration``, ``prompt`` and
``stop_reason``, which re-scoring uses when present (``template`` keeps --compare-templates rows apart), and
``train_data`` (the run's training data files, when known), so a re-score splits seen / held-out identity and
judges the same languages as the sweep did.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from workbench import atomic
from workbench.errors import BadInput, where
from workbench.evals.evalset import EvalItem
from workbench.evals.results import Row, Target, score_rows, target_from_label
from workbench.evals.sweep import Generated


@dataclass
class Saved:
    """One saved reply."""

    id: str
    response: str
    checkpoint: str
    template: str
    iteration: int | None = None
    train_data: tuple[str, ...] = ()


def read(path: str | Path) -> list[Saved]:
    """Parse a responses file; a malformed line is a `BadInput` naming the file and line."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"--responses {path}: a folder, not a responses file")
    if not path.is_file():
        raise BadInput(f"--responses {path}: file not found")
    out: list[Saved] = []
    seen: dict[tuple, int] = {}
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:  # a binary file, or another encoding: name where it stops being UTF-8
        lineno = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise BadInput(f"{where(path, lineno)}: not a responses file (not UTF-8 text: {exc.reason} at byte "
                       f"{exc.start})") from None
    except OSError as exc:
        raise BadInput(f"--responses {path}: cannot be read ({exc.strerror or exc})") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        loc = where(path, lineno)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{loc}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise BadInput(f"{loc}: expected a JSON object, got {type(obj).__name__}")
        if not isinstance(obj.get("id"), str) or not obj["id"]:
            raise BadInput(f"{loc}: 'id' must be a non-empty string")
        if not isinstance(obj.get("response"), str):
            raise BadInput(f"{loc}: 'response' must be a string")
        ckpt = obj.get("checkpoint", "base")
        if ckpt is None:
            ckpt = "base"
        if not isinstance(ckpt, str | int):
            raise BadInput(f"{loc}: 'checkpoint' must be a string")
        template = obj.get("template") or ""
        key = (str(ckpt), template, obj["id"])
        if key in seen:
            raise BadInput(f"{loc}: duplicate response for id {obj['id']!r} of {ckpt!r} (first on line {seen[key]})")
        seen[key] = lineno
        it = obj.get("iteration")
        data = obj.get("train_data") or []
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise BadInput(f"{loc}: 'train_data' must be a list of file paths")
        out.append(Saved(obj["id"], obj["response"], str(ckpt), template, it if isinstance(it, int) else None,
                         tuple(data)))
    if not out:
        raise BadInput(f"--responses {path}: no responses in the file")
    return out


def write(path: str | Path, generated: Sequence[Generated], items: Sequence[EvalItem],
          train_data: Sequence[str] = ()) -> Path:
    """Write every reply of a sweep (atomically): one line per (target, template, item); `train_data` (the run's
    training data files) goes on each line when known."""
    by_id = {i.id: i for i in items}
    rows = []
    for g in generated:
        for item_id, r in g.replies.items():
            rows.append({
                "id": item_id, "response": r.text, "checkpoint": g.target.name, "template": g.template,
                "iteration": g.target.iteration, "prompt": by_id[item_id].prompt if item_id in by_id else None,
                "stop_reason": r.stop_reason, **({"train_data": list(train_data)} if train_data else {}),
            })
    return atomic.write_jsonl(path, rows)


def saved_train_data(saved: Sequence[Saved]) -> tuple[str, ...]:
    """The training data files the sweep that saved these replies knew (the first line that says), or ()."""
    return next((s.train_data for s in saved if s.train_data), ())


def rescore(saved: Sequence[Saved], items: Sequence[EvalItem], warn=None, training=None) -> list[Row]:
    """Score saved replies against `items`, one row per (checkpoint, template), in file order (through
    `results.score_rows`, as the sweep does; `training` as there).

    Replies whose id is in none of the eval sets are skipped with a warning (through `warn`).
    """
    known = {i.id for i in items}
    groups: dict[tuple[str, str], dict[str, str]] = {}
    iters: dict[str, int | None] = {}
    unknown = 0
    for s in saved:
        if s.id not in known:
            unknown += 1
            continue
        groups.setdefault((s.checkpoint, s.template), {})[s.id] = s.response
        if s.iteration is not None:
            iters[s.checkpoint] = s.iteration
    if unknown and warn:
        warn(f"{unknown} saved response(s) have ids in none of the eval sets: skipped")
    if not groups:
        raise BadInput("--responses: no saved response matches an item of the eval sets (check --evalset)")
    entries = []
    for (ckpt, template), responses in groups.items():
        t = target_from_label(ckpt)
        if iters.get(ckpt) is not None and t.iteration is None:
            t = Target(t.name, "checkpoint", iteration=iters[ckpt])
        missing = len(known) - len(responses)
        if missing and warn:
            warn(f"{ckpt}{f' [{template}]' if template else ''}: {missing} item(s) have no saved response "
                 "and are left out")
        entries.append((t, template, responses, None))
    return score_rows(entries, items, training=training)
