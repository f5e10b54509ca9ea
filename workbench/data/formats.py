"""Conversations in the formats people have, turned into the one XTuner's `openai_map_fn` reads.

Accepted, one record per JSONL line or as the elements of a JSON array:

- OpenAI messages: ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}``
- alpaca: ``{"instruction": "...", "input": "...", "output": "..."}`` (``input`` and ``system`` optional)
- ShareGPT: ``{"conversations": [{"from": "human"|"gpt"|"system", "value": "..."}, ...]}``
- a workbench eval set item: ``{"prompt": "...", "answers": ["canonical", ...]}`` (so the shipped facts,
  `evalsets/general.jsonl`, can be mixed in as they are)

Everything comes out as OpenAI messages. A record that is none of these, or a conversation with no
assistant answer, is a `BadInput` naming ``file:line``.
"""

from __future__ import annotations

import json
from pathlib import Path

from workbench.errors import BadInput, where

Conversation = dict  # {"messages": [{"role": ..., "content": ...}, ...]}

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "chatgpt": "assistant", "bot": "assistant", "system": "system"}


def _records(path: Path):
    """Yield (line number, parsed record) from a JSON array file or a JSONL file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror})") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        yield from _array_records(path, text)
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{where(path, lineno)}: not valid JSON ({exc.msg} at column {exc.colno})") from None


def _array_records(path: Path, text: str):
    """The elements of a top-level JSON array, each with the line it starts on (for error messages)."""
    dec = json.JSONDecoder()
    pos = text.index("[") + 1
    n = len(text)

    def skip_ws(i: int) -> int:
        while i < n and text[i] in " \t\r\n":
            i += 1
        return i

    def line_of(i: int) -> int:
        return text.count("\n", 0, i) + 1

    pos = skip_ws(pos)
    if pos < n and text[pos] == "]":
        return
    while True:
        try:
            obj, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{where(path, exc.lineno)}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        yield line_of(pos), obj
        pos = skip_ws(end)
        if pos < n and text[pos] == ",":
            pos = skip_ws(pos + 1)
            continue
        if pos < n and text[pos] == "]":
            if skip_ws(pos + 1) != n:
                raise BadInput(f"{where(path, line_of(pos + 1))}: unexpected text after the JSON array")
            return
        raise BadInput(f"{where(path, line_of(pos))}: expected ',' or ']' in the JSON array")


def _text(value, loc: str, what: str) -> str:
    if not isinstance(value, str):
        raise BadInput(f"{loc}: {what} must be a string, got {type(value).__name__}")
    return value


def normalize(record, loc: str) -> Conversation:
    """One record in any accepted format -> ``{"messages": [...]}``; `loc` (``file:line``) names errors."""
    if not isinstance(record, dict):
        raise BadInput(f"{loc}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        msgs = record["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise BadInput(f"{loc}: 'messages' must be a non-empty list")
        out = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
                raise BadInput(f"{loc}: messages[{i}] needs a role of system, user or assistant")
            msg = {"role": m["role"], "content": _text(m.get("content"), loc, f"messages[{i}].content")}
            if "loss" in m:  # openai_map_fn honours a per-answer "loss": false
                msg["loss"] = m["loss"]
            out.append(msg)
    elif "instruction" in record or "output" in record:
        if "output" not in record or "instruction" not in record:
            raise BadInput(f"{loc}: an alpaca record needs both 'instruction' and 'output'")
        prompt = _text(record["instruction"], loc, "'instruction'")
        extra = record.get("input") or ""
        if extra:
            prompt = f"{prompt}\n{_text(extra, loc, repr('input'))}"
        out = [{"role": "system", "content": _text(record["system"], loc, "'system'")}] if record.get("system") else []
        out += [{"role": "user", "content": prompt},
                {"role": "assistant", "content": _text(record["output"], loc, "'output'")}]
    elif "conversations" in record:
        turns = record["conversations"]
        if not isinstance(turns, list) or not turns:
            raise BadInput(f"{loc}: 'conversations' must be a non-empty list")
        out = []
        for i, t in enumerate(turns):
            role = _SHAREGPT_ROLES.get(str(t.get("from"))) if isinstance(t, dict) else None
            if role is None:
                raise BadInput(f"{loc}: conversations[{i}] needs 'from' of human, gpt or system")
            out.append({"role": role, "content": _text(t.get("value"), loc, f"conversations[{i}].value")})
    elif "prompt" in record and "answers" in record:
        answers = record["answers"]
        if not isinstance(answers, list) or not answers:
            raise BadInput(f"{loc}: 'answers' must be a non-empty list")
        out = [{"role": "user", "content": _text(record["prompt"], loc, "'prompt'")},
               {"role": "assistant", "content": _text(answers[0], loc, "answers[0]")}]
    else:
        keys = ", ".join(sorted(record)) or "none"
        raise BadInput(f"{loc}: not a conversation (expected 'messages', alpaca 'instruction'/'output' or "
                       f"ShareGPT 'conversations'; keys: {keys})")
    if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
        raise BadInput(f"{loc}: the conversation has no assistant answer")
    if not any(m["role"] == "user" and m["content"].strip() for m in out):
        raise BadInput(f"{loc}: the conversation has no user message")
    return {"messages": out}


def read_conversations(path: str | Path) -> list[Conversation]:
    """All conversations of a JSON or JSONL file, as OpenAI messages (the first bad record raises)."""
    path = Path(path)
    convs = [normalize(rec, where(path, lineno)) for lineno, rec in _records(path)]
    if not convs:
        raise BadInput(f"{path}: no conversations in this file")
    return convs


def dumps(conversations: list[Conversation], *, jsonl: bool = False) -> str:
    """The file text: a JSON array with one conversation a line (diff-friendly), or JSONL."""
    lines = [json.dumps(c, ensure_ascii=False) for c in conversations]
    if jsonl:
        return "".join(line + "\n" for line in lines)
    return "[\n" + ",\n".join(lines) + "\n]\n"
