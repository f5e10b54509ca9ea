"""Score what training already wrote, without a model: EvaluateChatHook's samples (the ``Sample output:``
blocks of the mmengine log, and ``vis_data/eval_outputs_iter_*.txt``) against the eval items whose
prompts they match. A first forgetting curve across iterations before anything is converted or loaded.

A hook prompt found in no eval set ("What is the capital of France?") is still scored, reference-free: the
``before_train`` sample is the base's own reply, and each later iteration is judged by whether it still gives
that answer (retention, `results.score_rows`).

The log is parsed by the runs core (`workbench.runs.logparse`); the eval-output files are split into
samples here and each sample is cut into prompt and answer by the same `split_sample`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from workbench.errors import BadInput
from workbench.evals.evalset import EvalItem
from workbench.evals.normalize import normalize
from workbench.evals.results import BASE, CHECKPOINT, Row, Target, score_rows
from workbench.evals.training import lang_of

_EVAL_FILE = re.compile(r"^eval_outputs_iter_(\d+)\.txt$")
_EVAL_HEADER = re.compile(r"^Eval output \d+:\s*$", re.M)


def log_dirs(work_dir: str | Path, log_path: str | Path | None = None) -> list[Path]:
    """The timestamp folders to read: the one of `log_path` if given, else every one in the work dir."""
    if log_path:
        return [Path(log_path).parent]
    from workbench.runs.follow import timestamp_dirs

    return [d for _, d in timestamp_dirs(work_dir)]


def eval_output_samples(path: str | Path) -> list[tuple[str | None, str]]:
    """(user input, answer) of each sample in one ``eval_outputs_iter_N.txt``."""
    from workbench.runs.logparse import split_sample

    text = Path(path).read_text(encoding="utf-8", errors="replace")
    out = []
    for block in _EVAL_HEADER.split(text):
        if block.strip():
            user, _prompt, answer = split_sample(block.strip("\n"))
            out.append((user, answer))
    return out


def collect_samples(dirs: Sequence[Path]) -> dict[int, dict[str, str]]:
    """iteration -> {user input: answer}. Iteration 0 is before training (the base model).

    The first sample of an (iteration, input) wins: the one generated at the checkpoint iteration, before
    the extra after-train sample of the same iteration. ``eval_outputs_iter_N.txt`` is written after
    0-based iteration N, i.e. at training iteration N + 1.
    """
    from workbench.runs.events import group_samples
    from workbench.runs.logparse import parse_file

    out: dict[int, dict[str, str]] = {}
    for d in dirs:
        log = d / f"{d.name}.log"
        if log.is_file():
            for it, samples in group_samples(parse_file(log)).items():
                for s in samples:
                    if s.input is not None:
                        out.setdefault(it, {}).setdefault(s.input.strip(), s.answer)
        vis = d / "vis_data"
        for f in sorted(vis.glob("eval_outputs_iter_*.txt")) if vis.is_dir() else []:
            m = _EVAL_FILE.match(f.name)
            if m:
                for user, answer in eval_output_samples(f):
                    if user is not None:
                        out.setdefault(int(m.group(1)) + 1, {}).setdefault(user.strip(), answer)
    return dict(sorted(out.items()))


def log_items(unmatched: Sequence[str]) -> list[EvalItem]:
    """General items without reference answers for hook prompts in no eval set (judged by retention only)."""
    return [EvalItem(f"log-{n:03d}", "general", prompt, (), lang_of(prompt), {"source": "training log"})
            for n, prompt in enumerate(unmatched, 1)]


def score_samples(samples: dict[int, dict[str, str]], items: Sequence[EvalItem], template: str = "",
                  training=None) -> tuple[list[Row], list[str]]:
    """Rows (iteration 0 = base) of the samples: inputs that match an item's prompt (normalised) are scored against
    it; the other inputs become reference-free general items (`log_items`), scored by retention against the
    base's sample (inputs the base never answered stay unscored). Returns the rows and the inputs that matched no
    eval item."""
    by_prompt: dict[str, list[EvalItem]] = {}
    for item in items:
        by_prompt.setdefault(normalize(item.prompt), []).append(item)
    unmatched = sorted({u for answers in samples.values() for u in answers if normalize(u) not in by_prompt})
    # Only a prompt the base answered (before_train) has a reference to be judged against.
    extra = log_items([u for u in unmatched if u in samples.get(0, {})])
    for item in extra:
        by_prompt[normalize(item.prompt)] = [item]
    all_items = [*items, *extra]
    entries = []
    for it, answers in samples.items():
        responses = {item.id: answer for user, answer in answers.items() for item in by_prompt.get(normalize(user), ())}
        if not responses:
            continue
        target = Target(BASE, BASE) if it == 0 else Target(f"iter_{it}", CHECKPOINT, iteration=it)
        entries.append((target, template, responses, None))
    if not entries:
        prompts = ", ".join(repr(u) for u in unmatched[:4]) or "none found"
        raise BadInput(f"--from-log: no EvaluateChatHook prompt matches an eval-set prompt, and there is no "
                       f"before_train sample to judge the others by (hook prompts: {prompts})")
    return score_rows(entries, all_items, training=training), unmatched
