"""The sweep: every target (base, checkpoints, adapters, merged models) answers every eval prompt, with the
base loaded once, adapters hot-swapped, prompts batched, and every reply cached.

`generate` returns the raw replies; `sweep` scores them into rows. A target's replies come from the cache
when (model, adapter content hash, template, generation settings, backend numerics, prompt) was seen before,
so an interrupted or repeated sweep regenerates nothing it already has, and loads no model at all when
everything is cached.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from workbench.errors import BadInput
from workbench.evals import thresholds as T
from workbench.evals.cache import ResponseCache, cache_key, content_hash, model_fingerprint, resolved_numerics
from workbench.evals.evalset import EvalItem
from workbench.evals.results import ADAPTER, CHECKPOINT, MERGED, Row, Target, score_rows
from workbench.models.base import Backend, GenerationSettings, Reply, get_backend
from workbench.progress import ProgressFn

if TYPE_CHECKING:
    from workbench.models.templates import ChatFormat


@dataclass
class Plan:
    """What a sweep does. `formats` are ChatFormat objects (several = --compare-templates)."""

    base: str | None  # the base model folder (None when only merged models are scored)
    targets: list[Target]
    formats: list[ChatFormat]
    items: list[EvalItem]
    settings: GenerationSettings
    backend: str = "transformers"
    backend_options: dict = field(default_factory=dict)
    batch_size: int | None = None  # None: the backend's own batch (the transformers backend's follows its device)
    use_cache: bool = True


@dataclass
class Generated:
    """The replies of one (target, template): item id -> Reply, and how they were obtained."""

    target: Target
    template: str
    replies: dict[str, Reply]
    generated: int = 0
    cached: int = 0
    seconds: float = 0.0
    switch_seconds: float = 0.0  # time to attach / activate the adapter

    def stats(self) -> dict:
        return {"generated": self.generated, "cached": self.cached, "seconds": round(self.seconds, 3),
                "switch_seconds": round(self.switch_seconds, 4)}


def _numerics(plan: Plan) -> dict:
    # Options that change what greedy decoding produces (fp32 vs bf16, 4-bit, the device's kernels), resolved
    # to what runs, so "auto" and None give one key (cache.resolved_numerics).
    return resolved_numerics(plan.backend, plan.backend_options)


def _source(target: Target) -> str:
    """The file or folder a checkpoint, adapter or merged model is read from."""
    if target.source is None:
        raise BadInput(f"{target.name}: a {target.kind} target without its file or folder")
    return target.source


def _model_of(plan: Plan, target: Target) -> str:
    if target.kind == MERGED:
        return _source(target)
    if plan.base is None:
        raise BadInput(f"{target.name}: a {target.kind} needs the base model it applies to")
    return plan.base


def _key(plan: Plan, target: Target, fmt: ChatFormat, fingerprints: dict[str, str]) -> tuple[str, dict]:
    model = _model_of(plan, target)
    if model not in fingerprints:
        fingerprints[model] = model_fingerprint(model)
    adapter = content_hash(_source(target)) if target.kind in (CHECKPOINT, ADAPTER) else None
    parts = dict(model=fingerprints[model], adapter=adapter, template=asdict(fmt), settings=plan.settings.key(),
                 numerics=_numerics(plan))
    meta = {"model": str(model), "adapter": target.source if adapter else None, "template": fmt.name,
            "settings": asdict(plan.settings), **_numerics(plan)}
    return cache_key(**parts), meta


class _Models:
    """Loads each model once, on first need; attaches adapters by name; closes what it loaded."""

    def __init__(self, plan: Plan, log: Callable[[str], None]):
        self.plan, self.log = plan, log
        self.loaded: dict[str, Backend] = {}
        self.attached: set[str] = set()

    def backend_for(self, target: Target) -> Backend:
        model = _model_of(self.plan, target)
        if model not in self.loaded:
            for other in list(self.loaded):  # one model in memory at a time
                self.loaded.pop(other).close()
            t0 = time.perf_counter()
            self.loaded[model] = get_backend(self.plan.backend, model, **self.plan.backend_options)
            self.log(f"loaded {model} in {time.perf_counter() - t0:.1f}s")
            note = self.loaded[model].cpu_note
            if note:
                self.log(note)
        return self.loaded[model]

    def activate(self, target: Target) -> float:
        backend = self.backend_for(target)
        t0 = time.perf_counter()
        if target.kind in (CHECKPOINT, ADAPTER):
            # Backends accept letters, digits, - _ . in adapter names; the label may hold more ("run/iter_600").
            name = re.sub(r"[^\w.-]", "_", target.name)
            if name not in self.attached:
                backend.add_adapter(name, _source(target), config=target.config)
                self.attached.add(name)
            backend.set_active(name)
        else:
            backend.set_active(None)
        return time.perf_counter() - t0

    def close(self) -> None:
        for backend in self.loaded.values():
            backend.close()
        self.loaded.clear()


class SweepCancelled(Exception):
    """`generate` stopped because its `cancel` event was set (what it generated so far stays cached)."""


def generate(
    plan: Plan,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] | None = None,
    models: _Models | None = None,
    cancel: threading.Event | None = None,
) -> list[Generated]:
    """Replies of every (target, format) of `plan` to every item, from the cache or generated in batches.

    The cache file of a (target, format) is rewritten atomically after each batch. `progress` gets
    (done, total, label) over all targets; `log` gets one-line diagnostics (model loads). Setting `cancel`
    (from any thread, or from `progress` itself) stops it before the next batch with `SweepCancelled`; a
    model is only loaded for replies that are not cached, after `progress` heard of the cached ones.
    """
    log = log or (lambda _m: None)
    own_models = models is None
    models = models or _Models(plan, log)
    total = len(plan.targets) * len(plan.formats) * len(plan.items)
    done = 0
    out: list[Generated] = []
    fingerprints: dict[str, str] = {}
    try:
        for target in plan.targets:
            for fmt in plan.formats:
                label = target.name if len(plan.formats) == 1 else f"{target.name} [{fmt.name}]"
                key, meta = _key(plan, target, fmt, fingerprints)
                cache = ResponseCache(key, enabled=plan.use_cache, meta=meta)
                gen = Generated(target, fmt.name, {})
                todo = []
                for item in plan.items:
                    row = cache.get(item.prompt)
                    if row is not None:
                        gen.replies[item.id] = Reply(text=row["response"], tokens=row.get("tokens"),
                                                     stop_reason=row.get("stop_reason"), cached=True)
                        gen.cached += 1
                    else:
                        todo.append(item)
                done += gen.cached
                if progress:
                    progress(done, total, label)
                if todo and cancel is not None and cancel.is_set():
                    raise SweepCancelled()
                if todo:
                    gen.switch_seconds = models.activate(target)
                    backend = models.backend_for(target)
                    t0 = time.perf_counter()
                    size = plan.batch_size or backend.preferred_batch_size or T.EVAL_BATCH_SIZE
                    for start in range(0, len(todo), size):
                        if start and cancel is not None and cancel.is_set():
                            raise SweepCancelled()
                        batch = todo[start : start + size]
                        convs = [[{"role": "user", "content": i.prompt}] for i in batch]
                        replies = backend.generate(convs, fmt, plan.settings)
                        for item, r in zip(batch, replies, strict=True):
                            gen.replies[item.id] = r
                            cache.put(item.prompt, r.text, stop_reason=r.stop_reason, tokens=r.tokens)
                        cache.flush()
                        gen.generated += len(batch)
                        done += len(batch)
                        if progress:
                            progress(done, total, label)
                    gen.seconds = time.perf_counter() - t0
                out.append(gen)
    finally:
        if own_models:
            models.close()
    return out


def score(generated: Sequence[Generated], items: Sequence[EvalItem], training=None) -> list[Row]:
    """Rows of scored replies (`results.score_rows`: retention and paired changes against the base row of each
    template); `training` (a `training.TrainingData`) splits identity into seen / held-out prompts."""
    return score_rows([(g.target, g.template, {k: r.text for k, r in g.replies.items()}, g.stats())
                       for g in generated], items, training=training)
