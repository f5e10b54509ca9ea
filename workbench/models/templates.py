"""Chat formats: XTuner's PROMPT_TEMPLATE entries, the system prompt, and which one to use.

The seeds' worst surprise was chatting under another template than the one trained with ("你是谁" answered
as the base model in `xtuner chat`, right in the web demo). So the format is resolved in a fixed order:
an explicit ``--template``, then the ``prompt_template`` and ``SYSTEM`` of the training config that made the
adapter, then the tokenizer's own chat template; and a warning says when the one in use differs from training's.

xtuner is not required here (an lmdeploy-only box has none): `workbench.xtuner.templates` keeps a copy of
its table, and xtuner's own is used for the names the copy lacks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import BadInput
from workbench.xtuner import templates as _xt

BUILTIN_TEMPLATES = _xt.BUILTIN_TEMPLATES  # the copy of XTuner's table (workbench.xtuner.templates owns it)
template_names = _xt.template_names

TOKENIZER = "tokenizer"  # the name of a format taken from the tokenizer's own chat template


@dataclass(frozen=True)
class ChatFormat:
    """An XTuner PROMPT_TEMPLATE entry plus the system prompt in use.

    `render` produces the text XTuner trained on: SYSTEM (first turn, when a system prompt is set),
    then per turn INSTRUCTION, the answer, SUFFIX and SEP. The backend adds the bos token the way XTuner's
    `encode_fn` does. A format taken from the tokenizer (`name == "tokenizer"`) renders its Jinja template.
    """

    name: str
    system_fmt: str
    instruction: str
    suffix: str
    sep: str
    stop_words: tuple[str, ...]
    suffix_as_eos: bool
    system: str = ""
    jinja: str = ""  # the tokenizer's chat template (only for name == "tokenizer")
    bos_token: str = ""  # for Jinja templates that write `{{ bos_token }}`

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The prompt text for `messages` ([{"role": "system"|"user"|"assistant", "content": ...}]).

        A "system" message overrides the format's system prompt. XTuner's INSTRUCTION already opens the
        assistant's turn, so for XTuner formats `add_generation_prompt` changes nothing; it is passed to a
        tokenizer's Jinja template.
        """
        system = self.system
        turns = []
        for m in messages:
            role = m.get("role")
            if role == "system":
                system = m.get("content") or ""
            elif role in ("user", "assistant"):
                turns.append((role, m.get("content") or ""))
            else:
                raise BadInput(f"message role {role!r}: expected system, user or assistant")
        if self.jinja:
            return self._render_jinja(system, turns, add_generation_prompt)
        return "".join(inp + (out + self.sep if out is not None else "") for inp, out in self.turns(messages))

    def turns(self, messages: list[dict]) -> list[tuple[str, str | None]]:
        """(input text, answer text + SUFFIX or None) per turn, split the way XTuner's `encode_fn` tokenizes
        them: it encodes input and answer separately, adds eos after an answer when SUFFIX_AS_EOS is off,
        then SEP, and bos before the next input when an eos was added."""
        system = self.system
        out: list[list] = []
        round_ = 0
        for m in messages:
            role, content = m.get("role"), m.get("content") or ""
            if role == "system":
                system = content
            elif role == "user":
                round_ += 1
                out.append([self.instruction.format(input=content, round=round_), None])
            elif role == "assistant":
                if not out or out[-1][1] is not None:
                    out.append(["", None])  # an answer without a question (a prefilled opening)
                out[-1][1] = content + self.suffix
            else:
                raise BadInput(f"message role {role!r}: expected system, user or assistant")
        if out and system and self.system_fmt:
            out[0][0] = self.system_fmt.format(system=system) + out[0][0]
        return [(a, b) for a, b in out]

    def _render_jinja(self, system: str, turns: list[tuple[str, str]], add_generation_prompt: bool) -> str:
        import jinja2.sandbox

        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": r, "content": c} for r, c in turns
        ]
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(self.jinja).render(
            messages=msgs, add_generation_prompt=add_generation_prompt, bos_token=self.bos_token,
            eos_token=self.stop_words[0] if self.stop_words else "",
        )

    def with_system(self, system: str) -> ChatFormat:
        """The same format with another system prompt."""
        from dataclasses import replace

        return replace(self, system=system)

    def describe(self) -> str:
        """One line for display: ``internlm2_chat (system: "…")``."""
        sys_ = f' (system: "{self.system[:40]}{"…" if len(self.system) > 40 else ""}")' if self.system else ""
        return f"{self.name}{sys_}"


def _from_entry(name: str, entry: dict, system: str) -> ChatFormat:
    suffix = entry.get("SUFFIX") or ""
    stops = tuple(entry.get("STOP_WORDS") or ())
    if suffix and entry.get("SUFFIX_AS_EOS", False) and suffix not in stops:
        stops = (suffix, *stops)
    return ChatFormat(
        name=name,
        system_fmt=entry.get("SYSTEM") or "",
        instruction=entry["INSTRUCTION"],
        suffix=suffix,
        sep=entry.get("SEP") or "",
        stop_words=stops,
        suffix_as_eos=bool(entry.get("SUFFIX_AS_EOS", False)),
        system=system or "",
    )


def get_format(name: str, system: str = "") -> ChatFormat:
    """The XTuner template `name` (``internlm2_chat``, ``default``, ``qwen_chat``, ``llama3_chat``, …)."""
    entry = _xt.entry(name)
    if entry is None:
        raise BadInput(f"--template {name!r}: unknown template (known: {', '.join(template_names())})")
    return _from_entry(name, entry, system)


def tokenizer_format(model_path: str | Path, system: str = "") -> ChatFormat | None:
    """The tokenizer's own chat template of a model folder, read from its files (no transformers import)."""
    folder = Path(model_path)
    cfg_file = folder / "tokenizer_config.json"
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8")) if cfg_file.is_file() else {}
    except (OSError, ValueError):
        return None
    jinja = cfg.get("chat_template")
    if isinstance(jinja, list):  # [{"name": "default", "template": ...}, ...]
        jinja = next((t.get("template") for t in jinja if t.get("name") == "default"), None)
    if not jinja and (folder / "chat_template.jinja").is_file():
        jinja = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if not jinja:
        return None

    def tok(key):
        v = cfg.get(key)
        return v.get("content", "") if isinstance(v, dict) else (v or "")

    eos = tok("eos_token")
    return ChatFormat(
        name=TOKENIZER, system_fmt="", instruction="", suffix="", sep="", stop_words=(eos,) if eos else (),
        suffix_as_eos=True, system=system or "", jinja=jinja, bos_token=tok("bos_token"),
    )


@dataclass
class ResolvedFormat:
    """The chat format chosen, where it came from, training's template name, and a warning if they differ."""

    format: ChatFormat
    source: str  # "flag" | "chosen" (in the TUI) | "training config" | "tokenizer" | "default"
    training_format: str | None
    warning: str | None


def resolve_format(
    explicit: str | None = None,
    system: str | None = None,
    train_config: str | Path | None = None,
    model_path: str | Path | None = None,
    explicit_source: str = "flag",
) -> ResolvedFormat:
    """Choose the chat format: `explicit` (``--template``), else the training config's prompt_template and
    SYSTEM, else the tokenizer's chat template of `model_path`, else XTuner's ``default`` (with a warning).

    `system` (``--system``) overrides the system prompt whatever the source. The warning says when the
    template or system prompt in use differs from training's. `explicit_source` names where `explicit` came
    from ("flag": ``--template``; "chosen": picked in the TUI).
    """
    train_name, train_system = (None, "")
    if train_config is not None:
        train_name, train_system = training_format(train_config)
    warning = None
    if explicit:
        fmt = get_format(explicit, system if system is not None else train_system)
        source = explicit_source
    elif train_name:
        fmt = get_format(train_name, system if system is not None else train_system)
        source = "training config"
    else:
        tfmt = tokenizer_format(model_path, system or "") if model_path is not None else None
        if tfmt is not None:
            fmt, source = tfmt, "tokenizer"
        else:
            fmt, source = get_format("default", system or ""), "default"
            warning = "no template given, none in a training config or the tokenizer: using XTuner's 'default'"
    if train_name and fmt.name != train_name:
        warning = f"template {fmt.name!r} differs from {train_name!r}, the one used in training ({train_config})"
    elif train_name and (fmt.system or "") != (train_system or ""):
        warning = f"system prompt differs from the training config's SYSTEM ({train_config})"
    return ResolvedFormat(fmt, source, train_name, warning)


def training_format(config_path: str | Path) -> tuple[str | None, str]:
    """(template name, SYSTEM) of an XTuner config (a config file or a work dir holding its copy), read from its
    text (`workbench.xtuner.config.TrainingConfig`): configs import xtuner and the model code, which need not be
    installed where chat runs."""
    from workbench.xtuner.config import read_training_config

    tc = read_training_config(config_path)
    return tc.template, tc.system
