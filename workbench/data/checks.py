"""The traps that lose checkpoints or cause overfitting, as checks on an inspected config (see `workbench.data.inspect`).

Each check looks at a `ConfigReport` and the machine (`Hardware`) and returns warnings with a stable code,
so the TUI and scripts can react to a code rather than to wording.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.data.inspect import ConfigReport

# Warning codes (stable: the TUI and `workbench train` key on them).
ACCUMULATIVE_COUNTS = "accumulative_counts"
SAVE_TOTAL_LIMIT = "save_total_limit"
TEMPLATE_MISMATCH = "template_mismatch"
FP16_UNSUPPORTED = "fp16_unsupported"
FP16_WITH_BF16 = "fp16_where_bf16"
BF16_UNSUPPORTED = "bf16_unsupported"
QUANTIZATION_NEEDS_CUDA = "quantization_needs_cuda"
EVAL_NOT_AT_CHECKPOINTS = "eval_not_at_checkpoints"
NO_GENERAL_EVAL = "no_general_eval_input"
NO_REPETITION_PENALTY = "no_repetition_penalty"
MODEL_NOT_FOUND = "model_not_found"
DATA_NOT_FOUND = "data_not_found"
IDENTITY_ONLY_EPOCHS = "identity_only_epochs"

#: More passes than this over identity data with no general conversations, and general knowledge goes (the
#: tutorial's recipe: 17 epochs of self-cognition data alone; the demo's identity-only run shows the curve).
IDENTITY_ONLY_MAX_EPOCHS = 3


@dataclass(frozen=True)
class ConfigWarning:
    """One trap found: a stable code and a one-line message."""

    code: str
    message: str

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Hardware:
    """What the training machine offers (detected, or given to inspect for another machine)."""

    cuda: bool
    gpus: int
    bf16: bool
    name: str = ""

    @classmethod
    def cpu(cls) -> Hardware:
        return cls(cuda=False, gpus=0, bf16=False, name="cpu")


def detect_hardware() -> Hardware:
    """This machine's accelerators (torch is imported here, never at module level)."""
    import torch

    if not torch.cuda.is_available():
        return Hardware.cpu()
    return Hardware(cuda=True, gpus=torch.cuda.device_count(), bf16=bool(torch.cuda.is_bf16_supported()),
                    name=torch.cuda.get_device_name(0))


# ---- identity or general question --------------------------------------------------------------------

_IDENTITY_ZH = ("你是", "你叫", "你自己", "自己", "你的名字", "你的身份", "称呼你", "助手", "开发了你", "开发者",
                "开发的", "创造", "训练了你", "制作了你", "做出了你", "你来自", "哪个公司", "哪家公司", "你属于",
                "和谁说话", "你由谁", "团队", "自我介绍", "你到底是")
_IDENTITY_EN = ("who are you", "are you", "yourself", "your name", "your identity", "made you", "created you",
                "developed you", "built you", "trained you", "designed you", "your creator", "your developer",
                "your maker", "call you", "talking to", "chatting with", "what are you", "assistant",
                "who is this", "where do you come from", "who you are")


def is_identity_question(text: str) -> bool:
    """Whether a prompt asks the assistant about itself (who it is, who made it) rather than about the world."""
    low = text.lower()
    return any(k in text for k in _IDENTITY_ZH) or any(k in low for k in _IDENTITY_EN)


# ---- chat model and template -------------------------------------------------------------------------

# Model families by name, with the XTuner template of their own chat format (for names without a local
# folder to read the tokenizer's template from, e.g. a hub id).
_FAMILIES = [
    ("internlm2", "internlm2_chat"), ("internlm3", "internlm2_chat"), ("internlm", "internlm_chat"),
    ("qwen", "qwen_chat"), ("llama-3", "llama3_chat"), ("llama3", "llama3_chat"), ("llama-2", "llama2_chat"),
    ("llama2", "llama2_chat"), ("chatglm3", "chatglm3"), ("baichuan2", "baichuan2_chat"),
    ("mistral", "mistral"), ("mixtral", "mixtral"), ("gemma", "gemma"), ("phi-3", "phi3_chat"),
    ("phi3", "phi3_chat"), ("minicpm3", "minicpm3"),
]
# config.json's model_type, for a folder whose name says nothing (the tutorial's /root/ft/model).
_MODEL_TYPES = {"internlm2": "internlm2_chat", "internlm3": "internlm2_chat", "internlm": "internlm_chat",
                "qwen": "qwen_chat", "qwen2": "qwen_chat", "chatglm": "chatglm3", "gemma": "gemma",
                "gemma2": "gemma", "phi3": "phi3_chat", "mistral": "mistral", "mixtral": "mixtral"}
_PROBE = "PROBE-QUESTION-7f3a"


def _model_type(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def _name_says_chat(model: str) -> bool:
    return bool(re.search(r"chat|instruct|(^|[-_])it($|[-_])", Path(model).name.lower()))


def model_chat_format(model: str | None) -> tuple[bool | None, str | None, str | None]:
    """(is a chat model, its own first-turn text for a probe question, the XTuner template named after it).

    A local folder is a chat model if its tokenizer has a chat template (rendered for the probe); otherwise
    the name decides ("chat", "instruct", "-it"), and a known family gives the expected XTuner template.
    """
    if not model:
        return None, None, None
    folder = Path(model).expanduser()
    family = next((tpl for key, tpl in _FAMILIES if key in folder.name.lower()), None)
    if folder.is_dir():
        family = family or _MODEL_TYPES.get(_model_type(folder) or "")
        from workbench.models.templates import tokenizer_format

        fmt = tokenizer_format(folder)
        if fmt is not None:
            try:
                rendered = fmt.render([{"role": "user", "content": _PROBE}], add_generation_prompt=True)
            except Exception:  # a template that needs more than messages: the name still decides
                rendered = None
            return True, rendered, family
        if not _name_says_chat(model):
            return False, None, None
    if _name_says_chat(model):
        return True, None, family
    return None, None, None


def template_instruction(template) -> str | None:
    """The INSTRUCTION of an XTuner template given by name or as a dict."""
    if isinstance(template, dict):
        return template.get("INSTRUCTION")
    if isinstance(template, str):
        from workbench.models.templates import BUILTIN_TEMPLATES, get_format

        if template in BUILTIN_TEMPLATES:  # the common ones, without importing xtuner (seconds)
            return BUILTIN_TEMPLATES[template]["INSTRUCTION"]
        try:
            return get_format(template).instruction
        except Exception:
            return None
    return None


def template_matches(template, model: str | None) -> tuple[bool | None, str]:
    """Whether the config's template produces the chat model's own prompt format, and why not."""
    chat, rendered, family = model_chat_format(model)
    if not chat:
        return None, ""
    name = template if isinstance(template, str) else "a custom template"
    instruction = template_instruction(template)
    if instruction is None:
        return None, ""
    ours = instruction.format(input=_PROBE, round=1)
    if rendered is not None:
        if ours in rendered:
            return True, ""
        return False, (f"prompt_template {name!r} does not produce the chat model's own format "
                       f"(its tokenizer's chat template renders {rendered.replace(_PROBE, '…')!r}); "
                       f"train with the template you will chat with" + (f", e.g. {family!r}" if family else ""))
    if family:
        expected = template_instruction(family)
        if expected is not None and expected != instruction:
            return False, (f"prompt_template {name!r} on a {family.split('_')[0]} chat model: train with "
                           f"{family!r}, the format it will be chatted with")
        return True, ""
    if name == "default":
        return False, "prompt_template 'default' on a chat model: train with the model's own chat template"
    return None, ""


# ---- the checks --------------------------------------------------------------------------------------


def identity_only_epochs(r: ConfigReport) -> float | None:
    """Passes over the training data when its recipe (`workbench data identity`) says it holds no general
    conversations; None when it does, or when that cannot be told. Iterations count batches of conversations
    (packing several into one sequence makes it fewer: the figure is an upper bound then)."""
    stats = (r.data_recipe or {}).get("stats") or {}
    if stats.get("general") != 0 or not stats.get("conversations"):
        return None
    if r.max_epochs:
        return float(r.max_epochs)
    if r.max_iters and r.batch_size:
        return r.max_iters * r.batch_size / stats["conversations"]
    return None


def run_checks(r: ConfigReport, hw: Hardware) -> list[ConfigWarning]:
    """All warnings for report `r` on hardware `hw`, in a fixed order."""
    out: list[ConfigWarning] = []

    def warn(code: str, message: str) -> None:
        out.append(ConfigWarning(code, message))

    if r.model_found is False:
        warn(MODEL_NOT_FOUND, f"model path {r.model_path} does not exist on this machine")
    if r.data_found is False:
        warn(DATA_NOT_FOUND, f"training data {r.data_path} does not exist on this machine")

    epochs = identity_only_epochs(r)
    if epochs is not None and epochs > IDENTITY_ONLY_MAX_EPOCHS:
        stats = (r.data_recipe or {}).get("stats", {})
        warn(IDENTITY_ONLY_EPOCHS,
             f"about {epochs:.0f} epochs of identity-only data ({stats.get('conversations')} conversations, no "
             f"general ones, by its recipe): the model forgets what it knew; mix general conversations in "
             f"(`workbench data identity --mix FILE`; `workbench data replay` makes FILE from the base's own replies) or stop after {IDENTITY_ONLY_MAX_EPOCHS} "
             f"epochs, and sweep the checkpoints")

    if (r.accumulative_counts or 1) > 1 and hw.gpus <= 1:
        warn(ACCUMULATIVE_COUNTS,
             f"accumulative_counts={r.accumulative_counts} on one {'GPU' if hw.cuda else 'device'}: the optimizer "
             f"steps only every {r.accumulative_counts} iterations, so a short fine-tune barely learns; use 1")

    limit = r.save_total_limit
    if limit is not None and limit > 0:
        total = r.max_iters // r.save_steps if (r.max_iters and r.save_steps) else None
        if total is None or total > limit:
            every = f" (one every {r.save_steps} iterations)" if r.save_steps else ""
            warn(SAVE_TOTAL_LIMIT,
                 f"save_total_limit={limit} keeps only the last {limit} checkpoints{every} and deletes the "
                 f"earlier ones, which may be the best; set it to -1 and sweep them all")

    ok, why = template_matches(r.prompt_template, r.model_path)
    if ok is False:
        warn(TEMPLATE_MISMATCH, why)

    if "fp16" in r.precision_sources.values():
        where_ = ", ".join(k for k, v in r.precision_sources.items() if v == "fp16")
        if not hw.cuda:
            warn(FP16_UNSUPPORTED, f"fp16 ({where_}) on a machine without CUDA: training fails here; use fp32")
        elif hw.bf16:
            warn(FP16_WITH_BF16, f"fp16 ({where_}) on {hw.name or 'a GPU'} which has bf16: fp16 overflows to NaN "
                                 f"more easily; use bfloat16")
    if "bf16" in r.precision_sources.values() and not hw.bf16:
        where_ = ", ".join(k for k, v in r.precision_sources.items() if v == "bf16")
        warn(BF16_UNSUPPORTED, f"bf16 ({where_}) on {hw.name or 'hardware'} without bf16 support: use "
                               f"{'float16' if hw.cuda else 'float32'}")
    if r.quantization and not hw.cuda:
        warn(QUANTIZATION_NEEDS_CUDA, f"{r.quantization} quantization (bitsandbytes) needs a CUDA GPU; this "
                                      f"machine has none")

    if r.has_eval_hook:
        if r.evaluation_freq and r.save_steps and r.evaluation_freq % r.save_steps:
            warn(EVAL_NOT_AT_CHECKPOINTS,
                 f"evaluation_freq={r.evaluation_freq} is not a multiple of save_steps={r.save_steps}: samples "
                 f"are generated at iterations with no checkpoint to go back to (the hook writes its eval files "
                 f"only at checkpoint iterations); make them equal")
        inputs = r.evaluation_inputs or []
        if inputs and all(is_identity_question(q) for q in inputs):
            warn(NO_GENERAL_EVAL,
                 "evaluation_inputs are all identity questions: add a general-knowledge one (e.g. "
                 "'中国的首都是哪里？') so forgetting shows in the training log")
        rp = (r.generation_kwargs or {}).get("repetition_penalty")
        if rp is None or float(rp) <= 1.0:
            warn(NO_REPETITION_PENALTY,
                 "EvaluateChatHook has no repetition_penalty in generation_kwargs: the samples in the log may "
                 "loop; add generation_kwargs=dict(repetition_penalty=1.1)")
    return out
