"""The verdict on hand-made forgetting curves: which checkpoint is recommended, which are flagged, and what
the paragraph says."""

from __future__ import annotations

from workbench.evals import verdict as V
from workbench.evals.results import BASE, CHECKPOINT, Row, Target
from workbench.evals.scoring import Aggregates


def row(it: int | None, identity: float, general: float, leak: float = 0.0, distinct: float = 1.0,
        loop: float = 0.0) -> Row:
    t = Target(BASE, BASE) if it is None else Target(f"iter_{it}", CHECKPOINT, iteration=it)
    agg = Aggregates(48, 170, identity, identity, general, general, None, leak, loop, distinct, 0.0)
    return Row(t, "internlm2_chat", [], agg)


# The seeds' story: identity learned by 300, everything is the identity sentence by 600.
SEED_CURVE = [
    row(None, 0.0, 0.96),
    row(100, 0.2, 0.96),
    row(200, 0.7, 0.95),
    row(300, 0.92, 0.93),
    row(400, 1.0, 0.80, leak=0.10),
    row(500, 1.0, 0.40, leak=0.45, distinct=0.3),
    row(600, 1.0, 0.02, leak=0.98, distinct=0.01),
]


def test_recommends_the_best_identity_that_keeps_general_and_flags_the_collapse():
    v = V.decide(SEED_CURVE)
    assert v.status == V.OK
    assert v.recommended == "iter_300" and v.recommended_iteration == 300
    assert v.identity_learned_at == "iter_300"
    assert v.general_broke_at == "iter_400"
    assert set(v.flags["iter_600"]) >= {"forgetting", "leaking", "collapsed"}
    assert "collapsed" in v.flags["iter_500"] and "iter_300" not in v.flags
    assert v.safe == ["iter_100", "iter_200", "iter_300"]


def test_explanation_names_the_iterations():
    text = V.decide(SEED_CURVE).explanation
    assert "learned at iteration 300" in text
    assert "held through iteration 300" in text and "break at iteration 400" in text
    assert "Iteration 500 collapsed" in text
    assert "Recommended: iteration 300" in text


def test_ties_go_to_the_earliest_checkpoint():
    rows = [row(None, 0, 1.0), row(10, 1.0, 1.0), row(20, 1.0, 1.0), row(30, 1.0, 0.99)]
    assert V.decide(rows).recommended == "iter_10"


def test_tolerance_and_leak_bound_decide_safety():
    rows = [row(None, 0, 1.0), row(10, 0.5, 0.97), row(20, 0.9, 0.93), row(30, 1.0, 0.99, leak=0.2)]
    assert V.decide(rows).recommended == "iter_10"
    assert V.decide(rows, tolerance=0.10).recommended == "iter_20"
    assert V.decide(rows, max_leak=0.25).recommended == "iter_30"


def test_no_safe_checkpoint_recommends_none_and_says_why():
    rows = [row(None, 0, 1.0), row(10, 0.9, 0.5), row(20, 1.0, 0.1, leak=0.9, distinct=0.02)]
    v = V.decide(rows)
    assert v.status == V.NO_SAFE_CHECKPOINT and v.recommended is None
    assert "none is recommended" in v.explanation


def test_identity_never_learned_recommends_nothing_no_better_than_base():
    v = V.decide([row(None, 0.0, 1.0), row(10, 0.0, 1.0), row(20, 0.0, 1.0)])
    assert v.recommended is None and v.status == V.IDENTITY_NOT_LEARNED
    v = V.decide([row(None, 0.0, 1.0), row(10, 0.4, 1.0)])
    assert v.recommended == "iter_10" and v.status == V.IDENTITY_NOT_LEARNED
    assert "below what counts as learned" in v.explanation


def test_without_a_base_row_the_best_checkpoint_is_the_reference():
    v = V.decide([row(10, 0.5, 0.9), row(20, 1.0, 0.88), row(30, 1.0, 0.5)])
    assert v.reference_general == 0.9 and v.recommended == "iter_20"
    assert "no base row" in v.explanation


def test_only_a_base_row_has_nothing_to_compare():
    assert V.decide([row(None, 0, 1.0)]).status == V.NOTHING_TO_COMPARE


def test_looping_checkpoints_are_flagged():
    v = V.decide([row(None, 0, 1.0), row(10, 1.0, 1.0, loop=0.3)])
    assert v.flags["iter_10"] == ["looping"]


def test_identity_learned_only_after_forgetting_advises_a_gentler_run():
    v = V.decide([row(None, 0.0, 1.0), row(20, 0.0, 0.99), row(40, 0.45, 0.93, leak=0.05), row(60, 0.85, 0.54, leak=0.4)])
    assert v.recommended is None and "lower the learning rate" in v.explanation
    assert v.identity_learned_at == "iter_60" and v.general_broke_at == "iter_40"


def test_a_dip_the_training_recovered_from_is_not_where_general_ability_broke():
    """tiny_cpu_lora.py's curve: general 0.871 at iteration 10 (the first steps at full lr), back to 0.99 after."""
    rows = [row(None, 0.0, 0.994), row(10, 0.0, 0.871), row(20, 0.0, 0.994), row(60, 0.583, 0.988)]
    v = V.decide(rows)
    assert v.general_broke_at is None and v.recommended == "iter_60"
    assert "dipped at iteration 10 (0.871) and recovered (0.994 at iteration 20)" in v.explanation
    assert "started to break" not in v.explanation
    # ...and when it breaks for good later, that is where it broke, with the dip still told
    rows += [row(80, 0.9, 0.80, leak=0.2), row(100, 1.0, 0.60, leak=0.4)]
    v = V.decide(rows)
    assert v.general_broke_at == "iter_80"
    assert "dipped at iteration 10" in v.explanation and "held through iteration 60 (0.988)" in v.explanation
    assert "started to break at iteration 80" in v.explanation


def test_when_later_checkpoints_learned_the_identity_only_by_forgetting_the_advice_is_mixing_not_more_steps():
    """The tiny overfit run: iter 120 is the best safe one (identity 0.65), iter 200 learned it (0.92) at general 0.79."""
    rows = [row(None, 0.0, 0.994), row(120, 0.646, 0.947, leak=0.041), row(200, 0.917, 0.794, leak=0.194)]
    text = V.decide(rows).explanation
    assert "Recommended: iteration 120" in text
    assert "iteration 200 learned it only by losing general ability" in text and "--mix" in text
    assert "train longer" not in text.replace("rather than train longer", "")
    # with nothing learned later, training longer is the advice
    assert "train longer, or with more identity data" in V.decide(rows[:2]).explanation


def _with_sources(rows: list[Row]) -> list[Row]:
    from dataclasses import replace

    for r in rows:
        if not r.is_base:
            r.target = replace(r.target, source=f"/w/iter_{r.target.iteration}.pth")
    return rows


def test_the_comparison_after_a_sweep_is_the_recommended_checkpoint_and_the_last():
    rows = _with_sources([row(None, 0.0, 0.96), row(100, 0.2, 0.96), row(300, 0.92, 0.93), row(600, 1.0, 0.02)])
    picked = V.checkpoints_to_compare(rows, V.decide(rows), "internlm2_chat")
    assert [(r.name, why) for r, why in picked] == [("iter_300", "recommended"), ("iter_600", "last")]


def test_without_a_recommendation_the_comparison_shows_where_the_identity_was_learned():
    rows = _with_sources([row(None, 0.0, 0.96), row(100, 0.95, 0.10, leak=0.9), row(200, 1.0, 0.02, leak=0.98)])
    verdict = V.decide(rows)
    assert verdict.recommended is None
    picked = V.checkpoints_to_compare(rows, verdict)
    assert [(r.name, why) for r, why in picked] == [("iter_100", "identity learned"), ("iter_200", "last")]


def test_the_comparison_names_the_last_checkpoint_once_and_needs_a_checkpoint():
    rows = _with_sources([row(None, 0.0, 0.96), row(100, 0.95, 0.95)])
    assert [(r.name, why) for r, why in V.checkpoints_to_compare(rows, V.decide(rows))] == [("iter_100", "recommended")]
    assert V.checkpoints_to_compare([row(None, 0.0, 0.96)], None) == []
