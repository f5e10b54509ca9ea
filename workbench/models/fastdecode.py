"""The transformers backend's fast GPU path: fused adapters and a static-cache decode loop.

Why (measured on an H100 with a random model of InternLM2-1.8B's shape; docs/benchmarks.md): HF eager `generate` is
host-bound at batch 1 (about 33 tok/s against a bandwidth bound of about 800); a compiled decode step over a
`StaticCache` reaches about half the bound by itself, but `generate()`'s own loop adds about 1 ms a step; an
unmerged peft LoRA halves the speed, and peft's unmerge/merge drifts in bf16 and recompiles. So:

- `FusedAdapters` keeps each adapter's LoRA tensors and a copy of the original weights of every linear layer an
  adapter touches. Switching copies the originals back (the base, bit for bit) and adds scaling·(B@A) into the
  plain weights in place (5.5 ms on the device). The model stays a plain model with the same weight storage, so a
  compiled step and its CUDA graphs serve every adapter without recompiling.
- `DecodeLoop` prefills once, then runs a compiled one-token step over one `StaticCache` kept across calls, samples
  on the device and reads each token back while the next step already runs (the host's work per token hides behind
  the GPU's). It tries `torch.compile(mode="reduce-overhead")` (CUDA graphs) first, then "default", then eager,
  with a one-line warning, never a crash.

Everything that differs between transformers 4.4x (the CPU stack) and 5.x (the device) is in `_static_cache` and
`_forward_kwargs`.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
import torch.nn as nn

_LORA_KEY = re.compile(r"^base_model\.model\.(.+)\.(lora_A|lora_B)\.weight$")
# peft config features whose effect is not "W + scaling * B @ A" on a plain linear layer
_UNFUSABLE = ("use_dora", "use_qalora", "alora_invocation_tokens", "lora_bias", "fan_in_fan_out", "modules_to_save",
              "trainable_token_indices", "target_parameters", "layer_replication")
MIN_CACHE = 1024  # positions: attention reads the whole static cache every step, so keep it short; grown on demand


def warn(msg: str) -> None:
    print(f"workbench: {msg}", file=sys.stderr, flush=True)


def _trace_fallback() -> None:
    """The whole traceback of a failed compile, with WORKBENCH_DEBUG=1 (the warning keeps only its first line)."""
    if os.environ.get("WORKBENCH_DEBUG", "") not in ("", "0"):
        traceback.print_exc(file=sys.stderr)


# fused adapters ------------------------------------------------------------------------------------------
class FusedAdapters:
    """Adapters written into the weights of a plain model on switch (see the module docstring)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
        self.cuda = any(m.weight.is_cuda for m in self.linears.values())
        # a head tied to the embeddings: a delta written into it would change the embeddings too
        owners: dict[int, int] = {}
        for m in model.modules():
            for p in m.parameters(recurse=False):
                owners[id(p)] = owners.get(id(p), 0) + 1
        self.shared = {n for n, m in self.linears.items() if owners.get(id(m.weight), 0) > 1}
        self.originals: dict[str, torch.Tensor] = {}  # module name -> copy of its base weight (GPU or pinned CPU)
        self.loras: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor, float]]] = {}  # name -> module -> A, B, s
        self.active: str | None = None

    def unsupported(self, config, state_dict: dict) -> str | None:
        """Why an adapter cannot be fused (None when it can)."""
        for attr in _UNFUSABLE:
            if getattr(config, attr, None):
                return f"it uses {attr}"
        other = [k for k in state_dict if not _LORA_KEY.match(k)]
        if other:
            return f"it has weights other than plain LoRA A/B ({other[0]})"
        tied = sorted({m.group(1) for k in state_dict if (m := _LORA_KEY.match(k))} & self.shared)
        if tied:
            return f"it adapts {tied[0]}, whose weight is shared with another layer"
        return None

    def add(self, name: str, config, state_dict: dict) -> None:
        """Keep adapter `name`'s tensors on the model's device. Raises ValueError naming what does not fit."""
        from peft.tuners.tuners_utils import check_target_module_exists
        from peft.utils.other import get_pattern_key

        parts: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in state_dict.items():
            m = _LORA_KEY.match(key)
            if m is None:
                raise ValueError(f"not a LoRA weight: {key}")
            parts.setdefault(m.group(1), {})[m.group(2)] = tensor
        if not parts:
            raise ValueError("no LoRA weights in it")
        loras = {}
        for module, ab in parts.items():
            lin = self.linears.get(module)
            if lin is None:
                raise ValueError(f"it has weights for {module}, which is not a linear layer of the base")
            if set(ab) != {"lora_A", "lora_B"}:
                raise ValueError(f"{module} has only {', '.join(ab)}")
            a, b = ab["lora_A"], ab["lora_B"]
            if a.shape[1] != lin.in_features or b.shape[0] != lin.out_features or a.shape[0] != b.shape[1]:
                raise ValueError(f"{module}: lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)} do not fit "
                                 f"a {lin.in_features}->{lin.out_features} layer")
            r = a.shape[0]  # peft's rank_pattern is in the tensors' shapes already
            alpha = config.alpha_pattern.get(get_pattern_key(config.alpha_pattern.keys(), module), config.lora_alpha) \
                if config.alpha_pattern else config.lora_alpha
            scaling = alpha / math.sqrt(r) if config.use_rslora else alpha / r
            dev = lin.weight.device
            loras[module] = (a.to(dev, torch.float32), b.to(dev, torch.float32), scaling)
        # what peft would refuse too: a targeted layer without weights
        missing = [n for n in self.linears if n not in loras and check_target_module_exists(config, n)]
        if missing:
            raise ValueError(f"no weights for {len(missing)} LoRA layers (e.g. {missing[0]})")
        for module in loras:  # originals of newly touched layers: no adapter has changed them yet
            if module not in self.originals:
                self.originals[module] = _keep_copy(self.linears[module].weight)
        self.loras[name] = loras

    def remove(self, name: str) -> None:
        if self.active == name:
            self.set_active(None)
        del self.loras[name]
        if not self.loras:
            self.originals.clear()

    @torch.no_grad()
    def set_active(self, name: str | None) -> None:
        """Originals back into the layers the previous adapter touched, then originals + delta for `name`."""
        new = self.loras.get(name, {}) if name is not None else {}
        old = self.loras.get(self.active, {}) if self.active is not None else {}
        for module in set(old) | set(new):
            w = self.linears[module].weight
            base = self.originals[module].to(w.device, non_blocking=True)
            if module in new:
                a, b, s = new[module]
                w.copy_(base.float() + (b @ a).mul_(s))  # in fp32, then one rounding to the weight's dtype
            else:
                w.copy_(base)
        if self.cuda:
            torch.cuda.synchronize()  # the switch is complete (and its time honest) when this returns
        self.active = name


def _keep_copy(w: torch.Tensor) -> torch.Tensor:
    """A copy of a weight: on its GPU when that leaves room (1 GiB or a tenth of the GPU), else in pinned CPU memory."""
    w = w.detach()
    if not w.is_cuda:
        return w.clone()
    free, total = torch.cuda.mem_get_info(w.device)
    if free - w.numel() * w.element_size() > max(1 << 30, total // 10):
        return w.clone()
    return torch.empty(w.shape, dtype=w.dtype, pin_memory=True).copy_(w)


# the decode loop ------------------------------------------------------------------------------------------
_DECODE_THREAD: ThreadPoolExecutor | None = None
_DECODE_THREAD_LOCK = threading.Lock()


def _decode_thread() -> ThreadPoolExecutor:
    """The one thread that runs every compiled decode step of this process.

    CUDA graph trees keep their state in the thread-local storage of the thread that first used them
    (torch._inductor.cudagraph_trees.get_obj asserts the key is there). With a thread per loop, a second loop in
    the same process (a new chat session in the TUI, a merged model beside the base) could not capture graphs and
    fell back to mode=default (seen on the H200 with torch 2.11: `AssertionError` in get_container). One thread
    for the process also serialises the GPU work of several loops, which one GPU does anyway."""
    global _DECODE_THREAD
    with _DECODE_THREAD_LOCK:
        if _DECODE_THREAD is None:
            _DECODE_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-decode")
        return _DECODE_THREAD


class TooLong(Exception):
    """The prompt plus new tokens do not fit the model's positions: use `generate` instead."""


class _Restart(Exception):
    """The compile mode changed on a reply's first step: decode the reply again from the prompt."""


def _static_cache(model, max_len: int, device, dtype):
    """A batch-1 StaticCache. 4.4x allocates it here (max_batch_size/device/dtype); 5.x allocates each layer on its
    first update (the prefill), from the key states' device and dtype."""
    from transformers import StaticCache

    params = inspect.signature(StaticCache.__init__).parameters
    if "max_batch_size" in params:
        return StaticCache(config=model.config, max_batch_size=1, max_cache_len=max_len, device=device, dtype=dtype)
    return StaticCache(config=model.config, max_cache_len=max_len)


def _forward_kwargs(model) -> tuple[dict, bool]:
    """(kwargs that ask for the last position's logits only, whether forward takes `cache_position`).

    Prefill would otherwise compute prompt x vocab logits: `logits_to_keep` in 5.x, `num_logits_to_keep` in 4.4x.
    4.4x writes the static cache at `cache_position`; 5.x has no such argument (each cache layer counts its own
    length, so `cache.reset()` is what rewinds it), and both take `position_ids` for RoPE."""
    params = inspect.signature(model.forward).parameters
    keep = next(({name: 1} for name in ("logits_to_keep", "num_logits_to_keep") if name in params), {})
    return keep, "cache_position" in params


class Sampler:
    """Next token on the device: repetition penalty, then greedy, or temperature -> top-k -> top-p -> sample (the
    order of HF's processors). Sampling draws q ~ Exp(1) and takes argmax(p / q), which picks index i with
    probability p_i without a host sync."""

    def __init__(self, settings, prompt: list[int], vocab: int, device, generator: torch.Generator | None):
        self.s = settings
        self.gen = generator
        self.seen = None
        if settings.repetition_penalty != 1.0:
            self.seen = torch.zeros(vocab, dtype=torch.bool, device=device)
            self.seen[torch.tensor(prompt, device=device)] = True

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:  # [1, vocab] -> [1]
        s = self.s
        logits = logits.float()
        if self.seen is not None:
            p = s.repetition_penalty
            logits = torch.where(self.seen, torch.where(logits < 0, logits * p, logits / p), logits)
        if s.greedy:
            tok = logits.argmax(-1)
        else:
            logits = logits / s.temperature
            if s.top_k and s.top_k < logits.shape[-1]:
                kth = torch.topk(logits, s.top_k).values[..., -1:]
                logits = logits.masked_fill(logits < kth, -math.inf)
            if s.top_p < 1.0:
                ordered, idx = torch.sort(logits, descending=False)
                drop = ordered.softmax(-1).cumsum(-1) <= 1 - s.top_p
                drop[..., -1:] = False  # keep at least the best token
                logits = logits.masked_fill(drop.scatter(-1, idx, drop), -math.inf)
            probs = logits.softmax(-1)
            q = torch.empty_like(probs).exponential_(1.0, generator=self.gen)
            tok = (probs / q).argmax(-1)
        if self.seen is not None:
            self.seen[tok] = True
        return tok


class DecodeLoop:
    """Batch-1 decoding over one reusable StaticCache with a compiled one-token step.

    All work runs on one long-lived worker thread: torch's CUDA-graph trees are per thread, and chat streams from a
    new thread for every reply, which would record the graphs again each time.
    """

    MODES = ("reduce-overhead", "default", None)  # None = eager

    def __init__(self, model, *, device: str, dtype, compile: bool, max_positions: int):
        self.model = model
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.dtype = dtype
        self.max_positions = max_positions
        self.modes = list(self.MODES if compile else (None,))
        self.mode = self.modes[0]
        self.cache: Any = None  # a transformers StaticCache, made to measure on first use
        self.cache_len = 0
        self._keep, self._takes_cache_position = _forward_kwargs(model)
        self._step = self._build(self.mode)
        self._pin = self.cuda and self.device.index is not None  # events and graphs use the current GPU
        self._worker = _decode_thread()

    def _run(self, fn, *args):
        """`fn(*args)` on the process's decode thread, with this loop's GPU current there."""
        def call():
            if not self._pin:
                return fn(*args)
            with torch.cuda.device(self.device):
                return fn(*args)

        return self._worker.submit(call).result()

    def close(self) -> None:
        self.cache = None  # the decode thread is the process's: it stays for the next loop

    # the step --------------------------------------------------------------------------------------
    def _positions(self, pos: torch.Tensor) -> dict:
        if self._takes_cache_position:
            return {"position_ids": pos[None], "cache_position": pos}
        return {"position_ids": pos[None]}

    def _forward(self, tok: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=tok.view(1, 1), past_key_values=self.cache, use_cache=True, **self._positions(pos))
        return out.logits[:, -1, :]

    def _build(self, mode):
        if mode is None:
            return self._forward
        # dynamic=False: one static graph per cache length (CUDA graphs need fixed shapes anyway)
        return torch.compile(self._forward, mode=mode, fullgraph=True, dynamic=False)

    def _call_step(self, tok: torch.Tensor, pos: torch.Tensor, first: bool = False) -> torch.Tensor:
        while True:
            try:
                if self.mode == "reduce-overhead":
                    # a new iteration: the previous step's outputs (already consumed) may be overwritten
                    torch.compiler.cudagraph_mark_step_begin()
                return self._step(tok, pos)
            except Exception as exc:  # compile or graph capture failed: fall back, never crash
                if self.mode is None:
                    raise
                nxt = self.modes[self.modes.index(self.mode) + 1]
                _trace_fallback()
                msg = (str(exc).strip().splitlines() or [""])[0][:160]
                warn(f"fast decode: torch.compile mode={self.mode} failed ({type(exc).__name__}: {msg}); "
                     f"using {'mode=' + nxt if nxt else 'eager'}")
                self.mode = nxt
                self._step = self._build(nxt)
                if first:  # a failed capture may have run the step (and moved the cache): start the reply again
                    raise _Restart from None

    def _ensure_cache(self, need: int) -> None:
        if self.cache is not None and need <= self.cache_len:
            return
        length = min(max(MIN_CACHE, 1 << (need - 1).bit_length()), self.max_positions)
        self.cache = None
        self.cache = _static_cache(self.model, length, self.device, self.dtype)
        self.cache_len = length

    # decoding --------------------------------------------------------------------------------------
    def decode(self, prompt: list[int], settings, on_token: Callable[[int], bool]) -> None:
        """Generate up to `settings.max_new_tokens` tokens after `prompt`. `on_token(id)` sees each new token in
        order and returns True to stop. Raises TooLong when the cache cannot hold the reply."""
        if len(prompt) + settings.max_new_tokens > self.max_positions:
            raise TooLong
        return self._run(self._decode, prompt, settings, on_token)

    @torch.no_grad()
    def _decode(self, prompt: list[int], settings, on_token: Callable[[int], bool]) -> None:
        while True:
            try:
                return self._decode_once(prompt, settings, on_token)
            except _Restart:
                continue

    def _prefill(self, ids: list[int]) -> torch.Tensor:
        """Reset the cache and run the prompt through it (eager: one call of its own shape); last logits."""
        self.cache.reset()
        pos = torch.arange(len(ids), device=self.device)
        out = self.model(input_ids=torch.tensor([ids], device=self.device), past_key_values=self.cache, use_cache=True,
                         **self._positions(pos), **self._keep)
        return out.logits[:, -1, :]

    def _decode_once(self, prompt: list[int], settings, on_token: Callable[[int], bool]) -> None:
        n, dev = len(prompt), self.device
        self._ensure_cache(n + settings.max_new_tokens)
        gen = None
        if settings.seed is not None and not settings.greedy:
            gen = torch.Generator(device=dev)
            gen.manual_seed(settings.seed)
        logits = self._prefill(prompt)
        sample = Sampler(settings, prompt, logits.shape[-1], dev, gen)
        tok = sample(logits)
        del logits
        pos = torch.tensor([n], device=dev)
        if self.cuda:  # two pinned slots: the token being read and the one being computed
            host = torch.empty(2, dtype=torch.long, pin_memory=True)
            ready = [torch.cuda.Event(), torch.cuda.Event()]
        for i in range(settings.max_new_tokens):
            if self.cuda:
                host[i % 2].copy_(tok[0], non_blocking=True)
                ready[i % 2].record()
            nxt: torch.Tensor | None = None
            if i + 1 < settings.max_new_tokens:  # queue the next step before reading this token
                nxt = sample(self._call_step(tok, pos, first=i == 0))
                pos += 1
            if self.cuda:
                ready[i % 2].synchronize()
                t = int(host[i % 2])
            else:
                t = int(tok[0])
            if on_token(t) or nxt is None:  # None: the last step
                break
            tok = nxt

    def time_steps(self, steps: int = 64) -> float:
        """Seconds per decode step of the step alone (no sampling reads, no host work): what the loop could reach."""
        return self._run(self._time_steps, steps)

    @torch.no_grad()
    def _time_steps(self, steps: int) -> float:
        self._ensure_cache(steps + 8)
        tok = self._prefill([0]).argmax(-1)  # (5.x allocates the cache here, outside the compiled step)
        pos = torch.ones(1, dtype=torch.long, device=self.device)
        for _ in range(3):  # warm: compile and graph capture happen here
            self._call_step(tok, pos)
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            tok = self._call_step(tok, pos).argmax(-1)
            pos += 1
        if self.cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / steps
