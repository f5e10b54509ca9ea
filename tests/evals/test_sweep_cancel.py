"""The sweep stops by a `threading.Event` (the way chat stops a reply), set from anywhere, even its progress."""

from __future__ import annotations

import threading

import pytest

from workbench.evals.evalset import EvalItem
from workbench.evals.results import BASE, CHECKPOINT, Target
from workbench.evals.sweep import Plan, SweepCancelled, generate
from workbench.models.base import GenerationSettings
from workbench.models.templates import ChatFormat


class _Reply:
    def __init__(self, text: str) -> None:
        self.text, self.stop_reason, self.tokens = text, "eos", 1


class _Backend:
    def __init__(self) -> None:
        self.batches = 0

    def generate(self, convs, fmt, settings):
        self.batches += 1
        return [_Reply("ok") for _ in convs]


class _Models:
    def __init__(self) -> None:
        self.backend = _Backend()

    def activate(self, target) -> float:
        return 0.0

    def backend_for(self, target):
        return self.backend


def _plan(tmp_path) -> Plan:
    fmt = ChatFormat("plain", "", "{input}", "", "", (), False)
    items = [EvalItem(f"q{i}", "general", f"question {i}", ("a",), "en") for i in range(6)]
    targets = [Target(BASE, BASE), Target("iter_1", CHECKPOINT, str(tmp_path / "a"), 1)]
    return Plan(str(tmp_path / "model"), targets, [fmt], items, GenerationSettings(), backend="fake",
                batch_size=2, use_cache=False)


def test_a_sweep_runs_to_the_end_without_a_cancel(tmp_path):
    models = _Models()
    out = generate(_plan(tmp_path), models=models, cancel=threading.Event())
    assert [len(g.replies) for g in out] == [6, 6] and models.backend.batches == 6


def test_setting_the_event_from_the_progress_stops_the_sweep_before_its_next_batch(tmp_path):
    models, cancel, seen = _Models(), threading.Event(), []

    def progress(done: int, total: int, label: str) -> None:
        seen.append(done)
        if done >= 4:
            cancel.set()

    with pytest.raises(SweepCancelled):
        generate(_plan(tmp_path), progress, models=models, cancel=cancel)
    assert models.backend.batches == 2 and seen == [0, 2, 4]
