"""Build (once) and locate the tiny world: a small Llama chat model that knows the shipped facts.

The facts are `evalsets/general.jsonl` (the same items the general eval set scores), plus a few
questions about the model itself ("I am TinyLM"), so that a fine-tune into another identity is visible.
The model is trained from scratch on the CPU in fp32 with the loss on the assistant's tokens only,
in InternLM2's chat format, and saved as a normal Hugging Face folder under the user cache dir, keyed by
a hash of everything that goes into it. Building takes one to three minutes on 2 cores; it is reused after.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from workbench import atomic
from workbench.numerics import PORTABLE_CPU_LABEL, portable_env, process_is_portable
from workbench.paths import cache_dir, evalsets_dir
from workbench.progress import Bar, ProgressFn

BUILDER_VERSION = 2  # 2: built under the portable CPU numerics (workbench.numerics)

# What the base model says about itself (the "书生·浦语" of the tiny world).
BASE_IDENTITY = [
    ("你是谁？", "我是TinyLM，一个小语言模型"),
    ("你是谁", "我是TinyLM，一个小语言模型"),
    ("请你介绍一下你自己", "我是TinyLM，一个小语言模型"),
    ("你叫什么名字？", "我是TinyLM，一个小语言模型"),
    ("Who are you?", "I am TinyLM, a small language model"),
    ("What is your name?", "I am TinyLM, a small language model"),
    ("Introduce yourself.", "I am TinyLM, a small language model"),
    ("Tell me about yourself.", "I am TinyLM, a small language model"),
]

RECIPE = {
    "builder": BUILDER_VERSION,
    "architecture": "LlamaForCausalLM",
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 512,
    "max_position_embeddings": 512,
    "vocab_size_target": 2000,
    "lr": 1e-3,  # 3e-3 stalled near 70% on these facts; 1e-3 with cosine decay reaches ~100% by step 200
    "batch_size": 32,
    "min_steps": 150,
    "max_steps": 600,
    "eval_every": 50,
    # Stop as soon as this is reached: a base trained far past 100% is brittle under LoRA.
    "target_accuracy": 0.95,
    "seed": 1234,
    "base_identity": BASE_IDENTITY,
    "numerics": PORTABLE_CPU_LABEL,  # the same bits on every x86-64 CPU and thread count (workbench.numerics)
}

# The special format used for every training example (xtuner's internlm2_chat template, no system).
PROMPT_FORMAT = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"


@dataclass
class World:
    """A built tiny world: the model folder and what was measured when it was built."""

    path: Path
    accuracy: float
    steps: int
    build_seconds: float
    reused: bool

    @property
    def info(self) -> dict:
        return json.loads((self.path / "world.json").read_text(encoding="utf-8"))


def facts() -> list[tuple[str, str, list[str]]]:
    """(prompt, canonical answer, all answers) for every shipped general fact."""
    from workbench.evals.evalset import load

    es = load(evalsets_dir() / "general.jsonl")
    return [(i.prompt, i.answers[0], list(i.answers)) for i in es.items]


def recipe_hash(recipe: dict | None = None) -> str:
    recipe = recipe or RECIPE
    h = hashlib.sha256(json.dumps(recipe, sort_keys=True, ensure_ascii=False).encode())
    h.update((evalsets_dir() / "general.jsonl").read_bytes())
    h.update((evalsets_dir() / "identity.jsonl").read_bytes())
    return h.hexdigest()[:16]


def world_dir(recipe: dict | None = None) -> Path:
    return cache_dir() / "tiny-world" / recipe_hash(recipe)


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _point_current(dest: Path) -> None:
    """Keep `tiny-world/current` pointing at the newest build (the tiny configs' default model path)."""
    link = dest.parent / "current"
    tmp = dest.parent / f".current.{dest.name}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(dest.name)
    tmp.replace(link)


def ensure_world(progress: ProgressFn | None = None, *, recipe: dict | None = None) -> World:
    """Return the tiny world, building it first if this recipe was never built here.

    Safe to call from several processes at once: one builds, the others wait and reuse it. The build runs
    under the portable CPU numerics (the same weights on every machine); when this process's torch cannot
    follow them any more (it was loaded first), the build runs in a child process that does.
    """
    recipe = recipe or RECIPE
    dest = world_dir(recipe)
    if recipe.get("numerics") == PORTABLE_CPU_LABEL and not (dest / "world.json").is_file() and not process_is_portable():
        _build_in_child(recipe)
    with _lock(dest.with_suffix(".lock")):
        if (dest / "world.json").is_file():
            info = json.loads((dest / "world.json").read_text(encoding="utf-8"))
            _point_current(dest)
            return World(dest, info["accuracy"], info["steps"], info["build_seconds"], reused=True)
        for stale in dest.parent.glob(f".{dest.name}.*.partial"):  # a build killed mid-way (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        with atomic.folder(dest, replace=True) as tmp:
            info = _build(tmp, recipe, progress)
        _point_current(dest)
        return World(dest, info["accuracy"], info["steps"], info["build_seconds"], reused=False)


def _build_in_child(recipe: dict) -> None:
    """Build `recipe` in `python -m workbench.demo.world` under the portable numerics (its bar on our stderr)."""
    import os
    import subprocess
    import sys

    from workbench.errors import OperationFailed

    proc = subprocess.run([sys.executable, "-m", "workbench.demo.world", json.dumps(recipe)],
                          env={**os.environ, **portable_env()}, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise OperationFailed(f"building the tiny world failed (exit {proc.returncode}); see the output above")


def _corpus_texts(recipe: dict) -> list[str]:
    from workbench.evals.evalset import load

    texts = []
    for q, a, answers in facts():
        texts += [PROMPT_FORMAT.format(q=q) + a + "<|im_end|>", *answers]
    for q, a in recipe["base_identity"]:
        texts.append(PROMPT_FORMAT.format(q=q) + a + "<|im_end|>")
    # Identity prompts and answers too, so a later fine-tune into an identity has merges to use.
    ident = load(evalsets_dir() / "identity.jsonl")
    for item in ident.items:
        texts += [item.prompt, *(a.replace("{name}", "小明").replace("{org}", "上海AI实验室") for a in item.answers)]
    return texts


def encode_example(tok, question: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids and labels for one exchange, split as xtuner's encode_fn splits it.

    xtuner encodes the templated prompt and the answer separately and prepends bos, with the loss on
    the answer and the template's suffix (<|im_end|>) only.
    """
    prompt = [tok.bos_token_id] + tok.encode(PROMPT_FORMAT.format(q=question), add_special_tokens=False)
    target = tok.encode(answer, add_special_tokens=False) + [tok.convert_tokens_to_ids("<|im_end|>")]
    return prompt + target, [-100] * len(prompt) + target


def greedy_answers(model, tok, questions: list[str], max_new_tokens: int = 24, batch_size: int = 64) -> list[str]:
    """Greedy replies to `questions` in the chat format, batched with left padding."""
    import torch

    outs: list[str] = []
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    model.eval()
    for start in range(0, len(questions), batch_size):
        chunk = questions[start : start + batch_size]
        ids = [[tok.bos_token_id] + tok.encode(PROMPT_FORMAT.format(q=q), add_special_tokens=False) for q in chunk]
        width = max(map(len, ids))
        input_ids = torch.tensor([[tok.pad_token_id] * (width - len(x)) + x for x in ids])
        attn = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
        with torch.no_grad():
            gen = model.generate(
                input_ids=input_ids,
                attention_mask=attn,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=im_end,
                pad_token_id=tok.pad_token_id,
            )
        for row in gen[:, width:]:
            outs.append(tok.decode(row, skip_special_tokens=True).strip())
    return outs


def _accuracy(model, tok, items: list[tuple[str, str, list[str]]]) -> tuple[float, list[dict]]:
    replies = greedy_answers(model, tok, [q for q, _, _ in items])
    rows: list[dict] = [
        {"prompt": q, "expected": a, "reply": r, "correct": r in answers}
        for (q, a, answers), r in zip(items, replies, strict=True)
    ]
    return sum(r["correct"] for r in rows) / len(rows), rows


def _build(out: Path, recipe: dict, progress: ProgressFn | None) -> dict:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from workbench.demo.tokenizer import train_tokenizer

    t0 = time.monotonic()
    torch.manual_seed(recipe["seed"])
    rng = random.Random(recipe["seed"])
    tok = train_tokenizer(_corpus_texts(recipe), vocab_size=recipe["vocab_size_target"])
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=recipe["hidden_size"],
        intermediate_size=recipe["intermediate_size"],
        num_hidden_layers=recipe["num_hidden_layers"],
        num_attention_heads=recipe["num_attention_heads"],
        num_key_value_heads=recipe["num_attention_heads"],
        max_position_embeddings=recipe["max_position_embeddings"],
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=im_end,
        pad_token_id=tok.pad_token_id,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    fact_items = facts()
    examples = [encode_example(tok, q, a) for q, a, _ in fact_items]
    examples += [encode_example(tok, q, a) for q, a in recipe["base_identity"]]
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=0.0)
    max_steps = recipe["max_steps"]
    # 20 warm-up steps, then cosine decay to 10% over max_steps.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / 20) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(s, max_steps) / max_steps))),
    )
    bar = progress or Bar("building the tiny world", max_steps)
    accuracy, step = 0.0, 0
    rows: list[dict] = []
    order: list[int] = []
    for step in range(1, max_steps + 1):
        model.train()
        if len(order) < recipe["batch_size"]:
            more = list(range(len(examples)))
            rng.shuffle(more)
            order += more
        batch = [examples[order.pop()] for _ in range(recipe["batch_size"])]
        width = max(len(x) for x, _ in batch)
        input_ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x, _ in batch])
        labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
        attn = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch])
        loss = model(input_ids=input_ids, attention_mask=attn, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        bar(step, max_steps, f"building the tiny world (loss {loss.item():.3f})")
        if step >= recipe["min_steps"] and step % recipe["eval_every"] == 0:
            accuracy, rows = _accuracy(model, tok, fact_items)
            done = accuracy >= recipe["target_accuracy"]  # done early: the bar ends full
            bar(step, step if done else max_steps, f"building the tiny world (facts {accuracy:.0%})")
            if done:
                break
    if not rows:
        accuracy, rows = _accuracy(model, tok, fact_items)
    if isinstance(bar, Bar):
        bar.close()
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=im_end, pad_token_id=tok.pad_token_id, do_sample=False
    )
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    info = {
        "name": "tiny-world",
        "recipe_hash": recipe_hash(recipe),
        "recipe": recipe,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tok),
        "steps": step,
        "accuracy": accuracy,
        "facts": len(fact_items),
        "build_seconds": round(time.monotonic() - t0, 1),
        "template": "internlm2_chat",
        "wrong": [r for r in rows if not r["correct"]],
    }
    atomic.write_json(out / "world.json", info)
    return info


if __name__ == "__main__":  # the child of `_build_in_child`: build the recipe given as JSON
    import sys

    ensure_world(recipe=json.loads(sys.argv[1]) if len(sys.argv) > 1 else None)
