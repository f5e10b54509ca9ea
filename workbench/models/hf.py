"""The in-process backend: transformers + peft, on the CPU or a GPU.

The base is loaded once; adapters are injected into it by name (peft), and switching is `set_adapter`
(or `disable_adapter` for the base): milliseconds, no reload. Generation is batched with left padding
for evaluation, or streamed from a worker thread with cancellation for chat (see `hf_stream.py`).

Fast mode (on by default on a GPU; `fast=` or WORKBENCH_FAST_DECODE=0/1): adapters are fused into the plain
weights on switch instead of wrapped by peft, and one-conversation generation runs the compiled static-cache
loop of `fastdecode.py` instead of `generate()` (why: the device figures in its docstring).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import BadInput
from workbench.models import adapters as _adapters
from workbench.models.base import (
    CANCELLED,
    EOS,
    LENGTH,
    LOOP,
    STOP_WORD,
    AdapterInfo,
    Backend,
    GenerationSettings,
    Notice,
    Reply,
)
from workbench.models.generation import LoopDetector, cut_at_stop_word
from workbench.models.hf_decode import FastCriteria, StopCriteria, fast_loop, want_fast
from workbench.models.loading import default_batch_size, pick_device_dtype, require_trust
from workbench.models.templates import ChatFormat
from workbench.progress import ProgressFn

if TYPE_CHECKING:
    from workbench.models.hf_stream import TokenStream


class TransformersBackend(Backend):
    """One base model in this process, adapters attached by name.

    Options: `device` ("auto", "cpu", "cuda[:N]"), `dtype` ("auto", "float32", "bfloat16", "float16"),
    `load_in_4bit` (bitsandbytes, CUDA only), `trust_remote_code` (run code shipped in the model folder;
    refused unless asked for), `batch_size` (rows per `generate` batch; default `default_batch_size`), `fast` (fused adapters and the
    compiled decode loop; None = on for CUDA, off for the CPU, unless WORKBENCH_FAST_DECODE=0/1 says otherwise),
    `compile` (torch.compile the decode step; None = on for CUDA), `decoder` (which fast loop: "auto" = the fused
    decoder of `fused_decoder.py` when the model's layout is supported, else the static-cache loop over HF's forward
    of `fastdecode.py`; "fused" or "static-cache" to choose).
    """

    name = "transformers"

    def __init__(self, base: str | Path, *, device: str = "auto", dtype: str = "auto", load_in_4bit: bool = False,
                 trust_remote_code: bool = False, batch_size: int | None = None, label: str | None = None,
                 fast: bool | None = None, compile: bool | None = None, decoder: str = "auto"):
        folder = Path(base).expanduser()
        if decoder not in ("auto", "fused", "static-cache"):
            raise BadInput(f"decoder {decoder!r}: expected auto, fused or static-cache")
        if not (folder / "config.json").is_file():
            raise BadInput(f"{folder}: not a model folder (no config.json)")
        require_trust(folder, trust_remote_code)
        import torch

        super().__init__()
        self.device, self.dtype = pick_device_dtype(device, dtype)
        #: A line for the front ends when this process's CPU threads were limited to share the machine with training.
        self.cpu_note: str | None = None
        if self.device == "cpu":
            from workbench.cpushare import share_cpu_with_training

            self.cpu_note = share_cpu_with_training()
        if not self.device.startswith("cuda") and not load_in_4bit:
            # peft imports bitsandbytes when it is installed, and a CPU-only build logs that it "was compiled
            # without GPU support" on every start: true, and irrelevant here (4-bit needs CUDA and says so)
            logging.getLogger("bitsandbytes.cextension").setLevel(logging.ERROR)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.base_path = folder
        self.label = label or folder.name
        self.base_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self._batch_size = batch_size or default_batch_size(self.device)
        self.load_in_4bit = load_in_4bit
        kwargs: dict = {"torch_dtype": self.dtype, "trust_remote_code": trust_remote_code}
        if load_in_4bit:
            if not self.device.startswith("cuda"):
                raise BadInput("--load-in-4bit needs a CUDA GPU (bitsandbytes 4-bit has no CPU kernels here)")
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=self.dtype,
            )
            kwargs["device_map"] = {"": self.device}
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
        if not load_in_4bit:
            model = model.to(self.device)
        model.eval()
        self.model = model  # the plain base; becomes peft-wrapped when the first adapter is added
        self._peft: Any = None  # a peft.PeftModel wrapping `model` while peft-injected adapters are attached
        self._shapes = _adapters.module_shapes(model)
        self._linear_names = _adapters.linear_names(model)
        self._lock = threading.RLock()  # one generation (or switch) at a time on this model
        self._torch = torch
        self._fused = self._loop = None
        self._warm = False
        if want_fast(fast, self.device, load_in_4bit):
            self._loop = fast_loop(model, decoder, device=self.device, dtype=self.dtype,
                                    compile=self.device.startswith("cuda") if compile is None else compile,
                                    max_positions=int(getattr(model.config, "max_position_embeddings", 0) or 4096))
            from workbench.models import fastdecode

            # after the loop: the fused decoder re-points the linear layers at views of its fused weights
            self._fused = fastdecode.FusedAdapters(model)

    @property
    def preferred_batch_size(self) -> int:
        """Rows per `generate` batch: the `batch_size` option, else `default_batch_size` of the device."""
        return self._batch_size

    def prepare(self, template: ChatFormat, notice: Notice | None = None) -> None:
        """Compile the fast decode step now, when the first reply would (a GPU), not on the user's first message."""
        if self.compiles:
            if notice is not None:
                notice("compiling the decode step (once per process, so the first reply does not wait for it)…")
            self.warm_up(template)

    @property
    def compiles(self) -> bool:
        """Whether the first fast reply will compile the decode step (and so wait for it)."""
        return self._loop is not None and self._loop.mode is not None and not self._warm

    def warm_up(self, template: ChatFormat) -> None:
        """Pay the decode step's compile now (one two-token reply)."""
        if self._loop is None or self._warm:
            return
        self.generate([[{"role": "user", "content": "hi"}]], template, GenerationSettings(max_new_tokens=2))
        self._warm = True

    @property
    def fast(self) -> bool:
        """Whether the compiled decode loop answers single conversations (fused adapters may outlive it)."""
        return self._loop is not None

    # adapters ------------------------------------------------------------------------------------
    def add_adapter(self, name: str, source: str | Path, *, config: str | Path | None = None) -> AdapterInfo:
        if not name or name == "base" or not all(c.isalnum() or c in "-_." for c in name):
            raise BadInput(f"adapter name {name!r}: use letters, digits, - _ . (and not 'base')")
        if name in "lora_":  # peft finds adapters by name inside parameter names: "a" would match "lora_A"
            raise BadInput(f"adapter name {name!r} is too short: peft would confuse it with its own 'lora_' names")
        self._check_new(name)
        src = self._read(name, source, config)
        _adapters.check_fit(src, f"{self.label} ({self.base_path})", self.base_config, self._shapes)
        with self._lock:
            if self._fused is not None:
                why = self._fused.unsupported(src.config, src.state_dict)
                if why:
                    self._unfuse(f"adapter {name!r} cannot be fused into the weights ({why})")
            if self._fused is not None:
                self._fuse(name, src)
            else:
                self._inject(name, src)
            self._infos[name] = src.info
        return src.info

    def _read(self, name: str, source, config) -> _adapters.AdapterSource:
        src = _adapters.read_adapter(name, source, config)
        if not src.config.target_modules:
            src.config.target_modules = list(self._linear_names)
        # the base path an adapter names is informational here (it is checked by shape); peft would warn on
        # any difference in spelling (a `current` symlink, another mount point)
        src.config.base_model_name_or_path = None
        return src

    def _fuse(self, name: str, src: _adapters.AdapterSource) -> None:
        assert self._fused is not None
        try:
            self._fused.add(name, src.config, src.state_dict)
        except ValueError as exc:
            raise BadInput(f"adapter {name!r} ({src.info.source}) does not fit base {self.base_path}: {exc}") from None

    def _unfuse(self, why: str) -> None:
        """Leave fast mode for peft's wrappers (an adapter that is not plain LoRA): base weights back, every
        adapter re-read and injected, the plain generate() path from now on."""
        from workbench.models.fastdecode import warn

        warn(f"{why}: adapters now run through peft and generate() (slower)")
        if self._fused is not None:
            self._fused.set_active(None)
        self._fused = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        for n, info in self._infos.items():
            self._inject(n, self._read(n, info.source, info.config))
        if self._active is not None:
            self._peft.set_adapter(self._active)

    def _inject(self, name: str, src: _adapters.AdapterSource) -> None:
        from peft import get_peft_model, set_peft_model_state_dict

        # LoRA weights in the base's half precision on a GPU: peft's default fp32 adapters halve decode speed
        # (measured on the device); fp32 on the CPU and under 4-bit, where peft needs its own dtype
        autocast = self.dtype == self._torch.float32 or self.load_in_4bit
        try:
            if self._peft is None:
                self._peft = get_peft_model(self.model, src.config, adapter_name=name, autocast_adapter_dtype=autocast)
            else:
                self._peft.add_adapter(name, src.config, autocast_adapter_dtype=autocast)
            result = set_peft_model_state_dict(self._peft, src.state_dict, adapter_name=name)
        except (ValueError, RuntimeError, KeyError) as exc:  # what check_fit could not foresee
            self._drop(name)
            raise BadInput(f"adapter {name!r} ({src.info.source}) does not fit base {self.base_path}: "
                           f"{str(exc).splitlines()[0]}") from None
        missing = [k for k in getattr(result, "missing_keys", []) if f".{name}." in k and "lora_" in k]
        if missing:
            self._drop(name)
            raise BadInput(f"adapter {name!r} ({src.info.source}) does not fit base {self.base_path}: "
                           f"no weights for {len(missing)} LoRA layers (e.g. {missing[0]})")
        self._peft.eval()
        if self._active is not None:
            self._peft.set_adapter(self._active)

    def _drop(self, name: str) -> None:
        if self._peft is None:
            return
        if name in self._peft.peft_config:
            if len(self._peft.peft_config) == 1:
                self.model = self._peft.unload()  # the last adapter: give back the plain base
                self._peft = None
            else:
                self._peft.delete_adapter(name)

    def remove_adapter(self, name: str) -> None:
        self._check_known(name)
        with self._lock:
            if self._active == name:
                self._active = None
            if self._fused is not None:
                self._fused.remove(name)
            else:
                self._drop(name)
            del self._infos[name]
            if self._peft is not None and self._active is not None:
                self._peft.set_adapter(self._active)

    def set_active(self, name: str | None) -> None:
        self._check_known(name)
        with self._lock:
            if self._fused is not None:
                self._fused.set_active(name)
            elif name is not None:
                self._peft.set_adapter(name)
            self._active = name

    def count_tokens(self, text: str) -> int | None:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def describe(self) -> dict:
        return {**super().describe(), "base": str(self.base_path), "device": self.device,
                "dtype": str(self.dtype).replace("torch.", ""),
                "decode": f"fast ({getattr(self._loop, 'label', None) or self._loop.mode or 'eager'})"
                if self._loop is not None else "generate"}

    def close(self) -> None:
        with self._lock:
            if self._loop is not None:
                self._loop.close()
            self._loop = self._fused = None
            self._peft = None
            self.model = None
            if self.device.startswith("cuda"):
                self._torch.cuda.empty_cache()

    # generation ----------------------------------------------------------------------------------
    def _net(self):
        """The module to call, and the context that makes the active choice real (base = adapters off)."""
        if self._peft is None:
            return self.model, nullcontext()
        if self._active is None:
            return self._peft, self._peft.disable_adapter()
        return self._peft, nullcontext()

    def encode(self, messages: list[dict], template: ChatFormat) -> list[int]:
        """Token ids of the prompt, built the way XTuner's `encode_fn` builds training examples: bos, each
        input and answer encoded separately, eos after an answer when the template's SUFFIX is not the eos."""
        tok = self.tokenizer
        bos, eos = tok.bos_token_id, tok.eos_token_id
        ids: list[int] = []
        if template.jinja:  # the tokenizer's own template: it writes bos itself when it wants one
            text = template.render(messages)
            ids = tok.encode(text, add_special_tokens=False)
            if bos is not None and not (tok.bos_token and text.startswith(tok.bos_token)):
                ids = [bos, *ids]
            return ids
        needs_bos = True
        for inp, answer in template.turns(messages):
            if needs_bos and bos is not None:
                ids.append(bos)
            ids += tok.encode(inp, add_special_tokens=False)
            if answer is None:
                continue
            ids += tok.encode(answer, add_special_tokens=False)
            needs_bos = not template.suffix_as_eos
            if needs_bos and eos is not None:
                ids.append(eos)
            if template.sep:
                ids += tok.encode(template.sep, add_special_tokens=False)
        return ids

    def stop_ids(self, template: ChatFormat) -> tuple[list[int], list[str]]:
        """(eos token ids, stop words that are not single tokens): eos and stop words come from the template,
        plus the tokenizer's eos (XTuner appends it after each answer when SUFFIX_AS_EOS is off)."""
        ids, texts = [], []
        vocab = self.tokenizer.get_vocab()
        for w in template.stop_words:
            if w in vocab:
                ids.append(vocab[w])
            else:
                texts.append(w)
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        return sorted(set(ids)), texts

    def generation_kwargs(self, settings: GenerationSettings, eos_ids: list[int]) -> dict:
        from transformers import GenerationConfig

        cfg = dict(max_new_tokens=settings.max_new_tokens, eos_token_id=eos_ids,
                   pad_token_id=self.tokenizer.pad_token_id, repetition_penalty=settings.repetition_penalty)
        if settings.greedy:
            cfg.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            cfg.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p,
                       top_k=settings.top_k or None)
        return {"generation_config": GenerationConfig(**cfg)}

    def generate(self, conversations: list[list[dict]], template: ChatFormat, settings: GenerationSettings,
                 progress: ProgressFn | None = None) -> list[Reply]:
        eos_ids, stop_texts = self.stop_ids(template)
        prompts = [self.encode(m, template) for m in conversations]
        total = len(prompts)
        # longest first: rows of similar length pad less
        order = sorted(range(total), key=lambda i: -len(prompts[i]))
        out: dict[int, Reply] = {}
        with self._lock, self.cpu_turn():
            self._seed(settings)
            for start in range(0, total, self._batch_size):
                rows = order[start:start + self._batch_size]
                batch = self._generate_batch([prompts[i] for i in rows], settings, eos_ids, stop_texts,
                                             single=total == 1)
                out.update(zip(rows, batch, strict=True))
                if progress:
                    progress(min(start + self._batch_size, total), total, "generate")
        return [out[i] for i in range(total)]

    @contextmanager
    def cpu_turn(self) -> Iterator[None]:
        """Around one generation: on the CPU, share the threads with training runs on this machine and ask them to
        give way while it generates (workbench/cpushare.py); `cpu_note` says whether this process was limited."""
        if self.device != "cpu":
            yield
            return
        from workbench.cpushare import generating

        with generating() as note:
            self.cpu_note = note
            yield

    def _seed(self, settings: GenerationSettings) -> None:
        if settings.seed is not None:
            self._torch.manual_seed(settings.seed)
            if self.device.startswith("cuda"):
                self._torch.cuda.manual_seed_all(settings.seed)

    def _generate_batch(self, prompts: list[list[int]], settings: GenerationSettings, eos_ids: list[int],
                        stop_texts: list[str], cancel: threading.Event | None = None, streamer=None,
                        counter=None, single: bool = False) -> list[Reply]:
        """One batch through `generate()`; a chat stream or a lone conversation through the fast loop when on
        (eval batches stay on `generate()`, batched, over the fused weights)."""
        if self._loop is not None and len(prompts) == 1 and (single or streamer is not None):
            reply = self._fast_reply(prompts[0], settings, eos_ids, stop_texts, cancel, streamer, counter)
            if reply is not None:
                return [reply]
        torch = self._torch
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        crit = StopCriteria(self.tokenizer, width, eos_ids, stop_texts, cancel, counter)
        net, ctx = self._net()
        from transformers import StoppingCriteriaList

        with ctx, torch.inference_mode():
            out = net.generate(input_ids=input_ids, attention_mask=mask, streamer=streamer,
                               stopping_criteria=StoppingCriteriaList([crit]),
                               **self.generation_kwargs(settings, eos_ids))
        return [self._reply(out[r, width:].tolist(), eos_ids, stop_texts, settings, crit, r)
                for r in range(len(prompts))]

    def _fast_reply(self, prompt: list[int], settings: GenerationSettings, eos_ids: list[int], stop_texts: list[str],
                    cancel: threading.Event | None, streamer, counter) -> Reply | None:
        """The fast loop with `generate()`'s semantics: the same stop tests, streamer calls and counting. None when
        it cannot run here (too long for the cache, or the model's forward refused it before any token)."""
        from workbench.models.fastdecode import TooLong, warn

        torch = self._torch
        loop = self._loop
        assert loop is not None
        ids: list[int] = []
        crit = FastCriteria()
        eos = set(eos_ids)
        detector = LoopDetector()

        def on_token(t: int) -> bool:
            if streamer is not None:
                if not ids:
                    streamer.put(torch.tensor([prompt]))  # generate() hands the prompt over first
                streamer.put(torch.tensor([t]))
            ids.append(t)
            if counter is not None:
                counter()
            if cancel is not None and cancel.is_set():
                crit.cancelled = True
                return True
            if t in eos:
                return True
            if stop_texts and any(w in self.tokenizer.decode(ids[-16:], skip_special_tokens=False)
                                  for w in stop_texts):
                return True
            if detector(ids):
                crit.looped.add(0)
                return True
            return False

        try:
            loop.decode(prompt, settings, on_token)
        except TooLong:
            return None
        except Exception as exc:
            if ids:
                raise
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            warn(f"fast decode failed on this model ({type(exc).__name__}: {first}); using generate() from now on")
            loop.close()
            self._loop = None
            return None
        if streamer is not None:
            streamer.end()
        return self._reply(ids, eos_ids, stop_texts, settings, crit, 0)

    def _reply(self, ids: list[int], eos_ids: list[int], stop_texts: list[str], settings: GenerationSettings,
               crit: StopCriteria | FastCriteria, row: int) -> Reply:
        cut = next((i for i, t in enumerate(ids) if t in eos_ids), None)
        reason = LENGTH
        if cut is not None:
            reason = EOS if ids[cut] == self.tokenizer.eos_token_id else STOP_WORD
            tokens, ids = cut + 1, ids[:cut]
        else:
            tokens = len(ids)
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        text, found = cut_at_stop_word(text, stop_texts)
        if found:
            reason = STOP_WORD
        looped = row in crit.looped
        if looped:
            reason = LOOP
        elif crit.cancelled and cut is None and not found:
            reason = CANCELLED
        return Reply(text=text, tokens=tokens, stop_reason=reason, looped=looped)

    def stream(self, messages: list[dict], template: ChatFormat, settings: GenerationSettings,
               cancel: threading.Event | None = None) -> TokenStream:
        from workbench.models.hf_stream import TokenStream

        return TokenStream(self, messages, template, settings, cancel)
