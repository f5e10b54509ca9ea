"""The decode helpers of the in-process backend: which decode loop answers one conversation (the fused decoder,
or the static-cache loop over HF's forward), and the stopping criteria `generate` is given."""

from __future__ import annotations

import os
import threading

from workbench.errors import BadInput
from workbench.models.generation import LoopDetector


def want_fast(fast: bool | None, device: str, load_in_4bit: bool) -> bool:
    """The explicit option, else WORKBENCH_FAST_DECODE=0/1, else on for CUDA. Never under 4-bit: LoRA deltas
    cannot be added into quantized weights."""
    if fast is None:
        env = os.environ.get("WORKBENCH_FAST_DECODE", "").strip()
        if env not in ("", "0", "1"):
            raise BadInput(f"WORKBENCH_FAST_DECODE={env!r}: expected 0 or 1")
        fast = env == "1" if env else device.startswith("cuda")
        return fast and not load_in_4bit
    if fast and load_in_4bit:
        raise BadInput("fast decode cannot fuse adapters into 4-bit weights: leave --load-in-4bit or fast off")
    return fast


def fast_loop(model, decoder: str, **kwargs):
    """The fused decoder when the model's layout allows it (or `decoder` asks for it), else the static-cache loop
    over HF's forward; a model the fused decoder does not know says why in one line when it was asked for."""
    from workbench.models import fastdecode, fused_decoder

    if decoder != "static-cache":
        why = fused_decoder.unsupported(model)
        if why is None:
            return fused_decoder.FusedDecoder(model, **kwargs)
        if decoder == "fused":
            fastdecode.warn(f"fused decoder: not for this model ({why}); using the static-cache loop")
    return fastdecode.DecodeLoop(model, **kwargs)


class FastCriteria:
    """What `_reply` reads from a StopCriteria, filled in by the fast loop."""

    def __init__(self):
        self.looped: set[int] = set()
        self.cancelled = False


class StopCriteria:
    """Per-row stop test after every token: cancel, a multi-token stop word, or a repetition loop.

    (Single-token stop words and eos are handled by `generate` itself through ``eos_token_id``.)
    `counter`, when given, is called once per step: the stream counts tokens with it.
    """

    def __init__(self, tokenizer, prompt_len: int, eos_ids: list[int], stop_texts: list[str],
                 cancel: threading.Event | None, counter=None, detector: LoopDetector | None = None):
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.eos_ids = set(eos_ids)
        self.stop_texts = stop_texts
        self.cancel = cancel
        self.counter = counter
        self.detector = detector or LoopDetector()
        self.looped: set[int] = set()
        self.cancelled = False

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        if self.counter is not None:
            self.counter()
        rows = input_ids.shape[0]
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
            return torch.ones(rows, dtype=torch.bool, device=input_ids.device)
        done = [False] * rows
        gen = input_ids[:, self.prompt_len:].tolist()
        for r, ids in enumerate(gen):
            if any(t in self.eos_ids for t in ids):
                done[r] = True  # already finished; generate pads it from here on
                continue
            if self.stop_texts:
                tail = self.tokenizer.decode(ids[-16:], skip_special_tokens=False)
                if any(w in tail for w in self.stop_texts):
                    done[r] = True
                    continue
            if self.detector(ids):
                self.looped.add(r)
                done[r] = True
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
