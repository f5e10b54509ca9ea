"""`workbench data replay`: the base model's own replies to general prompts, as conversations to mix into training.

Identity-only data teaches a model one sentence and, at a learning rate that teaches it, breaks what else it could
say (the tutorial's "after 600 iterations it only says one sentence"). Mixing in general conversations is the
remedy, and the cheapest general conversations that cannot teach the model anything new are its own answers:
replay. Greedy, with the chat template training uses, so the training targets are exactly what the base said.
Keep the prompts disjoint from the eval sets: retention measured on a prompt that was trained is not retention.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from workbench.data.formats import Conversation
from workbench.errors import BadInput
from workbench.progress import ProgressFn


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a text file (one a line; blank lines and `#` comments skipped) or a JSONL/JSON eval set
    (each item's `prompt`). A missing, empty or unreadable file is a one-line `BadInput` naming it."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"--prompts {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"--prompts {path}: not UTF-8 text") from None
    prompts: list[str] = []
    if path.suffix in (".jsonl", ".json"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("//"):
                continue
            try:
                prompt = json.loads(line)["prompt"]
            except (ValueError, KeyError, TypeError):
                raise BadInput(f"{path}:{n}: expected a JSON object with a \"prompt\"") from None
            prompts.append(str(prompt))
    else:
        prompts = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise BadInput(f"--prompts {path}: no prompts in it")
    return list(dict.fromkeys(prompts))  # once each, in file order


_SENTENCE_END = re.compile(r"[.!?。！？][\"'”’)\]]*(?=\s|$)")  # a closing quote or bracket may follow


def whole_sentences(text: str) -> str | None:
    """`text` cut after its last complete sentence, or None when it has none (a reply cut at the length limit)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].strip() if ends else None


def replay(model: str | Path, prompts: Sequence[str], *, template: str, system: str = "", max_new_tokens: int = 64,
           backend_options: dict | None = None, progress: ProgressFn | None = None) -> list[Conversation]:
    """The base model's greedy replies to `prompts` under chat template `template`, as OpenAI-messages conversations.
    A reply cut at `max_new_tokens` keeps its complete sentences (a half sentence would teach the model to stop
    mid-word; short targets keep training fast); one without a complete sentence, an empty one and a looping one
    are left out."""
    from workbench.models.base import GenerationSettings, get_backend
    from workbench.models.templates import get_format

    fmt = get_format(template, system)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=0.0)
    with get_backend("transformers", model, **(backend_options or {})) as backend:
        replies = backend.generate([[{"role": "user", "content": p}] for p in prompts], fmt, settings, progress)
    out = []
    for prompt, reply in zip(prompts, replies, strict=True):
        text = reply.text.strip()
        if reply.stop_reason == "length":
            text = whole_sentences(text) or ""
        if not text or reply.stop_reason == "loop":  # the backend's loop detector marks loops
            continue
        out.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": text}]})
    return out
