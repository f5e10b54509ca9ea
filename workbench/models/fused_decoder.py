"""Batch-1 chat decoding for Llama-family models with workbench's own forward: fused weights, one CUDA graph a step.

Why (H200, random InternLM2-1.8B-shaped model, bf16, docs/benchmarks.md): the static-cache loop over HF's own
forward (`fastdecode.DecodeLoop`) reached 0.30 of the bandwidth bound, its compiled step alone 0.34. HF's forward is
general (cache objects, masks built per call, three q/k/v and two gate/up GEMMs a layer) and cudagraph trees add
host work on every call. A plain decoder of the same shape reached about half the bound. So, for models whose
structure is known here (`unsupported` says which; anything else keeps `DecodeLoop`):

- At load, each layer's q/k/v weights become one `wqkv` tensor and gate/up one `w13`; HF's modules then hold
  *views* into them (no second copy of the weights). Eval batches through HF `generate()` and the adapter switch of
  `fastdecode.FusedAdapters` (originals back, then + s·B·A, in place) write and read the same memory, so a switch is
  seen by the captured graph without recompiling.
- The one-token step (embedding, 24 layers, head, greedy argmax) is compiled by inductor (no cudagraph trees) and
  captured by us in one `torch.cuda.CUDAGraph` that reads the token and position from fixed buffers and writes the
  next ones back: a step is one `replay()`. The KV cache is one static tensor pair a layer, sized to the
  conversation's need (1024 positions at least, doubled on demand: a new size compiles and captures again).
- The host loop runs `AHEAD` steps in front of the token it reads (pinned ring buffer + events), so stop tests,
  detokenising and streaming hide behind the GPU.
- Sampling other than plain greedy (temperature, top-k/p, repetition penalty) runs `fastdecode.Sampler` on the
  graph's logits right after each replay, on the GPU, without a host sync; a seed gives the same draws as before.

The prompt is prefilled with the same weights, right-padded to a power of two (causal attention keeps the padding
out), and on a GPU captured once per length. In fp32 on the CPU the tokens equal HF `generate()`'s and the static-cache
loop's (tests/models/test_fused_decoder.py); on the H200 the chat path reached 0.51 of the bound (579 tok/s) against
0.31 for the static-cache loop, and answered the tiny world's real checkpoints as `generate()` did in fp32 and bf16.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from workbench.models.fastdecode import MIN_CACHE, Sampler, TooLong, _decode_thread, _trace_fallback, warn

AHEAD = 3  # steps queued in front of the token being read: host work per token hides behind this many GPU steps
#: inductor options for the step (bench/gpu_decode.py tries others in-process). Inductor's defaults: on the H200
#: coordinate descent tuning compiled for 62 s instead of 29 s and was not faster (566 vs 579 tok/s end to end).
INDUCTOR_OPTIONS: dict = {}
#: how the compiled step multiplies by a weight on a GPU: "cublas" (F.linear) or "reduce" (a mul + sum that inductor
#: turns into its own reduction kernel, fused with the norm or activation before it; fewer launches a layer). On the
#: H200 "reduce" ran at 616 tok/s against 566 (both with coordinate descent), but its answers on real checkpoints
#: were not checked against generate() there yet, so cuBLAS stays the default.
MATVEC = "cublas"
PREFILL_MIN = 16  # the shortest prefill bucket (prompts are right-padded to a power of two)
_ROPE_OK = ("default", "linear", "llama3", "yarn")  # static inv_freq: a table per position is exact


def unsupported(model) -> str | None:
    """Why this model cannot use the fused decoder (None when it can): the plain Llama layout only."""
    cfg = getattr(model, "config", None)
    if getattr(cfg, "model_type", None) != "llama":
        return f"model type {getattr(cfg, 'model_type', type(model).__name__)!r} (fused decoder: llama only)"
    act = getattr(cfg, "hidden_act", "silu")
    if act != "silu":
        return f"activation {act!r}"
    if getattr(cfg, "pretraining_tp", 1) not in (1, None):
        return "pretraining_tp > 1"
    inner = getattr(model, "model", None)
    rope = getattr(inner, "rotary_emb", None)
    if rope is None or getattr(rope, "rope_type", "default") not in _ROPE_OK:
        return f"rope type {getattr(rope, 'rope_type', None)!r}"
    head = getattr(model, "lm_head", None)
    if not isinstance(head, nn.Linear) or head.bias is not None or not isinstance(inner.embed_tokens, nn.Embedding):
        return "the head or the embedding is not a plain layer"
    for layer in inner.layers:
        a, m = layer.self_attn, layer.mlp
        for lin in (a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj):
            if type(lin) is not nn.Linear:  # peft wrappers, bitsandbytes 4-bit layers
                return f"{type(lin).__name__} layers"
            if lin.bias is not None:
                return "projection biases"
    return None


def _rebind(lin: nn.Linear, view: torch.Tensor) -> None:
    """Make `lin` compute with `view` (a slice of a fused weight), so both share one storage."""
    lin.weight = nn.Parameter(view, requires_grad=False)


class _Layer:
    def __init__(self, layer):
        a, m = layer.self_attn, layer.mlp
        with torch.no_grad():
            self.wqkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).detach()
            nq, nk = a.q_proj.out_features, a.k_proj.out_features
            _rebind(a.q_proj, self.wqkv[:nq])
            _rebind(a.k_proj, self.wqkv[nq:nq + nk])
            _rebind(a.v_proj, self.wqkv[nq + nk:])
            self.w13 = torch.cat([m.gate_proj.weight, m.up_proj.weight]).detach()
            ni = m.gate_proj.out_features
            _rebind(m.gate_proj, self.w13[:ni])
            _rebind(m.up_proj, self.w13[ni:])
        self.wo, self.w2 = a.o_proj.weight, m.down_proj.weight
        self.ln1, self.ln2 = layer.input_layernorm.weight, layer.post_attention_layernorm.weight
        self.split = (nq, nk, nk)
        self.inter = ni


class FusedDecoder:
    """The fast loop's interface (`decode`, `time_steps`, `mode`, `close`) over workbench's own Llama forward."""

    def __init__(self, model, *, device: str, dtype, compile: bool, max_positions: int):
        cfg = model.config
        inner = model.model
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.dtype = dtype
        self.max_positions = max_positions
        self.nh, self.nkv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.scale = self.hd ** -0.5  # HF's `scaling`
        self.gqa = self.nh != self.nkv
        self.eps = [(layer.input_layernorm.variance_epsilon, layer.post_attention_layernorm.variance_epsilon)
                    for layer in inner.layers]
        self.norm_eps = inner.norm.variance_epsilon
        self.layers = [_Layer(layer) for layer in inner.layers]
        self.embed, self.norm, self.head = inner.embed_tokens.weight, inner.norm.weight, model.lm_head.weight
        self.inv_freq = inner.rotary_emb.inv_freq.detach().float().to(self.device)
        self.rope_scaling = float(getattr(inner.rotary_emb, "attention_scaling", 1.0))
        # (compiled, CUDA graph) in the order tried; a failure moves to the next with a warning
        self.modes = [(c, g) for c, g in ((True, True), (True, False), (False, True), (False, False))
                      if (compile or not c) and (self.cuda or not g)]
        self.compiled, self.graphs = self.modes[0]
        self.cache_len = 0
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self._graph = None
        self._step_fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
        self.tok = torch.zeros(1, dtype=torch.long, device=self.device)
        self.pos = torch.zeros(1, dtype=torch.long, device=self.device)
        self.last = torch.zeros(1, dtype=torch.long, device=self.device)
        self._prefill_graphs: dict | None = None
        self.stats: dict = {}  # the last reply's: first_token_s (prefill included), prompt, tokens, s
        self._host = torch.zeros(AHEAD + 1, dtype=torch.long, pin_memory=self.cuda)  # tokens on their way out
        # CUDA events that say when a token's copy to the host is done (the CPU's copies are synchronous: none)
        self._ready: list[Any] = [torch.cuda.Event() if self.cuda else None for _ in range(AHEAD + 1)]
        self._worker = _decode_thread()

    @property
    def mode(self) -> str | None:
        """For describe(): 'compiled' (inductor) or None (eager)."""
        return "compiled" if self.compiled else None

    @property
    def label(self) -> str:
        return f"fused, {'compiled' if self.compiled else 'eager'}{', CUDA graph' if self.graphs else ''}"

    def _run(self, fn, *args):
        def call():
            if not self.cuda or self.device.index is None:
                return fn(*args)
            with torch.cuda.device(self.device):
                return fn(*args)

        return self._worker.submit(call).result()

    def close(self) -> None:
        self.k = self.v = []
        self._graph = self._step_fn = self._prefill_graphs = None
        self.cache_len = 0

    # the forward ------------------------------------------------------------------------------------
    def _rms(self, x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
        h = x.float()  # as LlamaRMSNorm: in fp32, back to the input dtype, then the weight
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return w * h.to(x.dtype)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    @staticmethod
    def _matvec(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x [1, 1, in] @ w.T as a reduction (accumulated in fp32 by inductor's generated kernel)."""
        return (x.view(1, -1) * w).sum(-1, dtype=torch.float32).to(x.dtype).view(1, 1, -1)

    def _layers(self, x: torch.Tensor, cos, sin, write, attend, lin=F.linear, last=None) -> torch.Tensor:
        """x [1, n, hidden] through every layer; `write(i, k, v)` stores keys/values, `attend(i, q, k, v)` attends;
        the logits of position `last` (a [1] tensor; default the last position)."""
        n = x.shape[1]
        for i, L in enumerate(self.layers):
            h = self._rms(x, L.ln1, self.eps[i][0])
            q, k, v = lin(h, L.wqkv).split(L.split, dim=-1)
            q = self._rope(q.view(1, n, self.nh, self.hd).transpose(1, 2), cos, sin)
            k = self._rope(k.view(1, n, self.nkv, self.hd).transpose(1, 2), cos, sin)
            v = v.view(1, n, self.nkv, self.hd).transpose(1, 2)
            write(i, k, v)
            o = attend(i, q, k, v).transpose(1, 2).reshape(1, n, self.nh * self.hd)
            x = x + lin(o, L.wo)
            h = self._rms(x, L.ln2, self.eps[i][1])
            g, u = lin(h, L.w13).split(L.inter, dim=-1)
            x = x + lin(F.silu(g) * u, L.w2)
        x = x[:, -1:] if last is None else x.index_select(1, last)
        return lin(self._rms(x, self.norm, self.norm_eps), self.head)[:, -1, :]

    def _sdpa(self, q, k, v, **kw):
        extra: dict[str, Any] = {"enable_gqa": True} if self.gqa else {}
        return F.scaled_dot_product_attention(q, k, v, scale=self.scale, **kw, **extra)

    def _one(self, tok: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decode step: token `tok` at position `pos` -> (logits [1, vocab], greedy next token [1])."""
        x = F.embedding(tok.view(1, 1), self.embed)
        cos, sin = self.cos[pos].view(1, 1, 1, -1), self.sin[pos].view(1, 1, 1, -1)
        mask = (self.arange <= pos).view(1, 1, 1, -1)

        def write(i, k, v):  # index_put_, the form inductor updates in place (no copy of the whole cache)
            self.k[i][:, :, pos] = k
            self.v[i][:, :, pos] = v

        lin = self._matvec if self.compiled and self.cuda and MATVEC == "reduce" else F.linear
        logits = self._layers(x, cos, sin, write, lambda i, q, k, v: self._sdpa(q, self.k[i], self.v[i],
                                                                                attn_mask=mask), lin)
        return logits, logits.float().argmax(-1)

    def _body(self) -> torch.Tensor:
        """What one step does to the fixed buffers: the next token into `tok`, `pos` one on; the logits out."""
        assert self._step_fn is not None  # set by _ensure before any step
        logits, nxt = self._step_fn(self.tok, self.pos)
        self.tok.copy_(nxt)
        self.pos.add_(1)
        return logits

    # the cache and the captured step -------------------------------------------------------------------
    def _ensure(self, need: int) -> None:
        if need <= self.cache_len and self._step_fn is not None:
            return
        length = min(max(MIN_CACHE, 1 << (need - 1).bit_length()), self.max_positions)
        self._graph = self._step_fn = None
        self.k = self.v = []
        shape = (1, self.nkv, length, self.hd)
        # zeros: positions past the reply are masked, but a NaN there would still reach the output through 0 * NaN
        self.k = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.v = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        emb = torch.outer(torch.arange(length, device=self.device, dtype=torch.float32), self.inv_freq)
        emb = torch.cat((emb, emb), dim=-1)  # as HF's rotary embedding: fp32, scaled, then the model dtype
        self.cos = (emb.cos() * self.rope_scaling).to(self.dtype)
        self.sin = (emb.sin() * self.rope_scaling).to(self.dtype)
        self.arange = torch.arange(length, device=self.device)
        self.ids = torch.zeros(1, length, dtype=torch.long, device=self.device)
        self.cache_len = length
        self._prefill_graphs = {} if self.graphs else None
        self._prepare()

    def _prepare(self) -> None:
        """Compile and capture the step for the current cache, falling back one mode at a time."""
        while True:
            try:
                self._step_fn = self._one
                if self.compiled:
                    self._step_fn = torch.compile(self._one, fullgraph=True, dynamic=False,
                                                  options=dict(INDUCTOR_OPTIONS) if self.cuda else None)
                self.pos.zero_()
                self._prefill_graphs = {} if self.graphs else None
                if self.graphs:
                    self._capture()
                elif self.compiled:
                    self._body()  # compile now, not inside the first reply's timing
                return
            except Exception as exc:  # compile or capture failed: fall back, never crash
                nxt = self.modes[self.modes.index((self.compiled, self.graphs)) + 1:]
                if not nxt:
                    raise
                _trace_fallback()
                was = self.label
                self.compiled, self.graphs = nxt[0]
                msg = (str(exc).strip().splitlines() or [""])[0][:160]
                warn(f"fast decode ({was}) failed ({type(exc).__name__}: {msg}); using {self.label}")
                self._graph = None

    @staticmethod
    def _capture_fn(fn, warm: int):
        """(a CUDA graph of `fn()`, its output), after `warm` runs on a side stream (compile, autotune, handles)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warm):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fn()
        return graph, out

    def _capture(self) -> None:
        self._graph, self._logits = self._capture_fn(self._body, warm=3)
        self.pos.zero_()

    def _step(self) -> torch.Tensor:
        if self._graph is not None:
            self._graph.replay()
            return self._logits
        return self._body()

    # decoding -------------------------------------------------------------------------------------------
    def decode(self, prompt: list[int], settings, on_token: Callable[[int], bool]) -> None:
        """As `DecodeLoop.decode`: up to `settings.max_new_tokens` after `prompt`, `on_token(id)` -> True stops."""
        if len(prompt) + settings.max_new_tokens > self.max_positions:
            raise TooLong
        return self._run(self._decode, prompt, settings, on_token)

    def _prefill_body(self, bucket: int) -> torch.Tensor:
        """The prompt in `self.ids[:, :bucket]` (right-padded) into the cache; the logits at `self.last`. Causal
        attention keeps the padding out of every real position; what it writes past the prompt is masked until the
        decode steps overwrite it."""
        x = F.embedding(self.ids[:, :bucket], self.embed)

        def write(i, k, v):
            self.k[i][:, :, :bucket] = k
            self.v[i][:, :, :bucket] = v

        return self._layers(x, self.cos[:bucket], self.sin[:bucket], write,
                            lambda i, q, k, v: self._sdpa(q, k, v, is_causal=bucket > 1), last=self.last)

    def _prefill(self, ids: list[int]) -> torch.Tensor:
        """Logits after the prompt. Eager work of ~40 kernels a layer: on a GPU it is captured once per bucket length
        (powers of two) and replayed, which takes the host's launch time (several ms a reply) out of each reply."""
        n = len(ids)
        bucket = min(max(PREFILL_MIN, 1 << (n - 1).bit_length()), self.cache_len)
        self.ids[0, :n].copy_(torch.tensor(ids))
        self.last.fill_(n - 1)
        if not self.graphs or self._prefill_graphs is None:
            return self._prefill_body(bucket)
        if bucket not in self._prefill_graphs:
            try:
                self._prefill_graphs[bucket] = self._capture_fn(lambda: self._prefill_body(bucket), warm=1)
            except Exception as exc:  # a capture failed: prefill eagerly from now on
                _trace_fallback()
                warn(f"fast decode: capturing the prefill failed ({type(exc).__name__}: "
                     f"{(str(exc).strip().splitlines() or [''])[0][:160]}); prefilling eagerly")
                self._prefill_graphs = None
                return self._prefill_body(bucket)
        graph, logits = self._prefill_graphs[bucket]
        graph.replay()
        return logits

    @torch.no_grad()
    def _decode(self, prompt: list[int], settings, on_token: Callable[[int], bool]) -> None:
        t0 = time.perf_counter()
        n, total = len(prompt), settings.max_new_tokens
        self._ensure(n + total)
        gen = None
        if settings.seed is not None and not settings.greedy:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(settings.seed)
        logits = self._prefill(prompt)
        plain = settings.greedy and settings.repetition_penalty == 1.0
        sample = None if plain else Sampler(settings, prompt, logits.shape[-1], self.device, gen)
        self.tok.copy_(logits.float().argmax(-1) if sample is None else sample(logits))
        self.pos.fill_(n)
        # the same loop on the CPU (copies are synchronous there, and events are not needed): the tests run it
        ring, host, ready = AHEAD + 1, self._host, self._ready

        def issue(i: int) -> None:  # queue token i: its step (token 0 came from the prefill), then its copy out
            if i:
                logits = self._step()
                if sample is not None:
                    self.tok.copy_(sample(logits))
            host[i % ring].copy_(self.tok[0], non_blocking=self.cuda)
            if self.cuda:
                ready[i % ring].record()

        issued = 0
        for i in range(total):
            while issued < min(i + AHEAD + 1, total):
                issue(issued)
                issued += 1
            if self.cuda:
                ready[i % ring].synchronize()
            if not i:
                self.stats = {"first_token_s": time.perf_counter() - t0, "prompt": n}
            if on_token(int(host[i % ring])):
                break
        if self.cuda:
            torch.cuda.current_stream().synchronize()  # steps queued past a stop finish before the next reply
        self.stats.update(tokens=i + 1, s=time.perf_counter() - t0)

    def time_steps(self, steps: int = 64) -> float:
        """Seconds per step of the step alone (replays back to back, no reads): what the loop could reach."""
        return self._run(self._time_steps, steps)

    @torch.no_grad()
    def _time_steps(self, steps: int) -> float:
        self._ensure(steps + 8)
        self.tok.copy_(self._prefill([0]).argmax(-1))
        self.pos.fill_(1)
        for _ in range(3):
            self._step()
        if self.cuda:
            torch.cuda.synchronize()
        self.pos.fill_(1)
        t0 = time.perf_counter()
        for _ in range(steps):
            self._step()
        if self.cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / steps
