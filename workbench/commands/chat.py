"""`workbench chat` (a plain terminal chat over the model core) and `workbench conversations`.

The REPL works wherever a terminal does (no TUI): lines are prompts, lines starting with ``/`` are commands.
Ctrl-C while a reply streams stops that reply (within one token step); Ctrl-C or Ctrl-D at the prompt quits.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from workbench.commands._common import emit_json, info, table
from workbench.errors import BadInput, WorkbenchError

HELP = """commands:
  /models             list the loaded variants (base, adapters, checkpoints, merged); * = answering
  /use NAME           switch to a variant (base = adapters off)
  /load NAME=PATH     attach another adapter folder or iter_N.pth checkpoint
  /all [PROMPT]       send the last prompt (or PROMPT) to every variant, answers side by side
  /clear              clear the context: later prompts are sent without the turns so far (same conversation)
  /context            how many turns and tokens each prompt is sent with now
  /reset              forget the history, start a new conversation
  /save [TITLE]       name this conversation (it is saved as you go) and show where it is
  /system [TEXT]      show or set the system prompt
  /template           show the chat template in use
  /help               this list
  /quit               leave (Ctrl-D, or a bare `quit` or `exit`, too)

Each prompt is sent with the conversation so far (since the last /clear)."""


def _adapter_pairs(values: tuple[str, ...]) -> list[tuple[str, str]]:
    pairs = []
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise BadInput(f"--adapter {v!r}: expected NAME=PATH")
        pairs.append((name.strip(), path.strip()))
    return pairs


def _looks_local(value: str) -> bool:
    # A hub id is "org/name"; anything else (absolute, ./, ~, deeper paths) can only be a folder here.
    return value.startswith(("/", ".", "~")) or value.count("/") != 1 or Path(value).expanduser().exists()


def _check_model_folder(label: str, value: str) -> None:
    path = Path(value).expanduser()
    if not _looks_local(value):
        return
    if not path.exists():
        raise BadInput(f"{label} {value}: no such model folder")
    if not path.is_dir():
        raise BadInput(f"{label} {value}: a file, not a model folder")
    if not (path / "config.json").is_file():
        raise BadInput(f"{label} {value}: not a model folder (no config.json)")


def _check_adapter(name: str, value: str) -> None:
    from workbench.runs.checkpoints import validate_checkpoint

    label, path = f"--adapter {name}={value}", Path(value).expanduser()
    if not path.exists():
        raise BadInput(f"{label}: no such adapter folder or checkpoint")
    if path.suffix == ".pth":  # an XTuner checkpoint: a file, or a DeepSpeed folder
        try:
            validate_checkpoint(path, deep=True)
        except BadInput as exc:
            raise BadInput(f"{label}: {exc.message.removeprefix(str(path) + ': ')}") from None
        return
    if path.is_file():
        raise BadInput(f"{label}: a file, not an adapter (a PEFT adapter folder or an iter_N.pth checkpoint)")
    if not (path / "adapter_config.json").is_file():
        if (path / "config.json").is_file():
            raise BadInput(f"{label}: a full model, not an adapter (config.json, no adapter_config.json); "
                           "give it as BASE or --merged")
        raise BadInput(f"{label}: not a PEFT adapter folder (no adapter_config.json)")


def _check_paths(base: str | None, adapters: list[tuple[str, str]], config: str | None, merged: str | None) -> None:
    """Every path given on the command line, before anything loads (a typo must not cost a model load)."""
    if base:
        _check_model_folder("BASE", base)
    if merged:
        _check_model_folder("--merged", merged)
    for name, value in adapters:
        _check_adapter(name, value)
    if config:
        cfg = Path(config).expanduser()
        if not cfg.is_file():
            raise BadInput(f"--config {config}: " + ("a folder, not a config file" if cfg.is_dir() else "no such file"))


@click.command()
@click.argument("base", required=False, type=click.Path())
@click.option("--adapter", "adapters", multiple=True, metavar="NAME=PATH",
              help="An adapter to attach: a PEFT adapter folder or an XTuner iter_N.pth (file or DeepSpeed folder).")
@click.option("--config", "config", type=click.Path(dir_okay=False),
              help="Training config for .pth adapters that are not in their work dir.")
@click.option("--run", "run", metavar="RUN", help="A run (id, name or work dir): its checkpoints become iter_N.")
@click.option("--merged", type=click.Path(), help="A merged model folder, loaded beside the base as 'merged'.")
@click.option("--backend", type=click.Choice(["transformers", "lmdeploy"]), default=None,
              help="Model backend (default: the default_backend setting).")
@click.option("--template", help="XTuner prompt template (internlm2_chat, default, qwen_chat, ...). "
              "Default: the training config's, else the tokenizer's.")
@click.option("--system", help="System prompt (default: the training config's SYSTEM).")
@click.option("--trust-remote-code/--no-trust-remote-code", default=None,
              help="Run model code shipped in the model folder (InternLM2 needs it). Default: the training "
              "config's choice, else the trust_remote_code setting.")
@click.option("--device", default=None, help="auto, cpu or cuda (default: the device setting).")
@click.option("--dtype", default="auto", show_default=True, help="auto, float32, bfloat16 or float16.")
@click.option("--load-in-4bit", is_flag=True, help="4-bit weights through bitsandbytes (CUDA only).")
@click.option("--lmdeploy-python", help="Python of the lmdeploy environment (default: the lmdeploy_python setting).")
@click.option("--max-new-tokens", type=click.IntRange(1), default=None, help="Longest reply (default: setting).")
@click.option("--temperature", type=click.FloatRange(0), default=None, help="0 = greedy (default: setting).")
@click.option("--top-p", type=click.FloatRange(0, 1), default=1.0, show_default=True)
@click.option("--top-k", type=click.IntRange(0), default=0, show_default=True)
@click.option("--repetition-penalty", type=click.FloatRange(0), default=1.0, show_default=True)
@click.option("--seed", type=int, default=None, help="Seed for sampling.")
@click.option("--open", "open_id", metavar="ID", help="Reopen a saved conversation (see `workbench conversations`).")
def chat(base, adapters, config, run, merged, backend, template, system, trust_remote_code, device, dtype,
         load_in_4bit, lmdeploy_python, max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed,
         open_id) -> None:
    """Chat with BASE, its adapters and a run's checkpoints, loading the base once.

    Examples: `workbench chat MODEL --adapter me=./hf`, `workbench chat --run my-run` (base from the run's
    config, every checkpoint as iter_N), `workbench chat MODEL --merged ./merged`.
    """
    from workbench import settings as user_settings
    from workbench.models import conversations as convs
    from workbench.models.base import GenerationSettings
    from workbench.models.session import open_session, spec_from
    from workbench.targets import resolve_spec

    prefs = user_settings.load()
    folder = convs.conversations_dir(prefs)
    conversation = convs.find(open_id, folder) if open_id else None
    header = dict(conversation.header.get("spec", {})) if conversation else {}
    if base or not conversation:
        header["base"] = base
    flags = {"adapters": _adapter_pairs(adapters) if adapters else None, "config": config, "run": run,
             "merged": merged, "template": template, "system": system, "trust_remote_code": trust_remote_code,
             "backend": backend, "device": device, "dtype": dtype, "load_in_4bit": True if load_in_4bit else None}
    spec = spec_from(prefs, **{**header, **{k: v for k, v in flags.items() if v is not None}})
    if lmdeploy_python:
        spec.backend_options = {**spec.backend_options, "python": lmdeploy_python}
    if not (spec.base or spec.run or spec.merged):
        raise BadInput("BASE: give a base model folder, --run RUN or --merged PATH")
    _check_paths(base, list(spec.adapters) if adapters else [], config, merged)
    resolved = resolve_spec(spec, prefs)  # an unknown run is named before the base loads
    gen = GenerationSettings(
        max_new_tokens=max_new_tokens or prefs.max_new_tokens,
        temperature=prefs.temperature if temperature is None else temperature,
        top_p=top_p, top_k=top_k, repetition_penalty=repetition_penalty, seed=seed,
    )
    if spec.backend == "lmdeploy":  # SIGTERM must run our exit handlers so the server is stopped too
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    info("loading…")
    session = open_session(spec, gen, notice=lambda m: info(m), conversation=conversation, resolved=resolved,
                           conversations=folder)
    try:
        _print_models(session)
        if conversation:
            info(f"reopened conversation {conversation.id} ({len(session.messages) // 2} turns)")
        info("type a message, or /help")
        Repl(session).loop()
    finally:
        session.close()


def _print_models(session) -> None:
    rows = [{"": "*" if n == session.current else "", "name": n, "kind": v.kind, "source": v.source}
            for n, v in session.variants.items()]
    info(table(rows, ["", "name", "kind", "source"]))


class Repl:
    """Reads lines, streams answers to stdout, runs /commands."""

    def __init__(self, session, out=None):
        self.session = session
        self.out = out or sys.stdout
        self.interactive = sys.stdin.isatty()

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def loop(self) -> None:
        while True:
            try:
                line = input(f"{self.session.current}> ") if self.interactive else sys.stdin.readline()
            except (EOFError, KeyboardInterrupt):
                self.write("\n")
                return
            if not self.interactive and line == "":
                return  # end of input
            line = line.strip()
            if not line:
                continue
            if line.lower() in ("quit", "exit"):  # what people type to leave; never a prompt worth sending
                return
            try:
                if line.startswith("/"):
                    if self.command(line) is False:
                        return
                else:
                    self.answer(line)
            except WorkbenchError as exc:
                info(f"error: {exc.message}")

    def answer(self, text: str) -> None:
        cancel = threading.Event()
        old = signal.signal(signal.SIGINT, lambda *a: cancel.set()) if _main_thread() else None
        try:
            self.write(f"[{self.session.current}] ")
            for piece in self.session.ask(text, cancel=cancel):
                self.write(piece)
            self.write("\n")
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
        reply = self.session.last_reply
        if reply and reply.stop_reason in ("loop", "cancelled", "length"):
            info({"loop": "[stopped: the reply was repeating itself]", "cancelled": "[cancelled]",
                  "length": f"[stopped at {reply.tokens} tokens: max_new_tokens]"}[reply.stop_reason])

    def command(self, line: str) -> bool | None:
        cmd, _, arg = line[1:].partition(" ")
        arg = arg.strip()
        s = self.session
        if cmd in ("quit", "exit", "q"):
            return False
        if cmd == "help":
            self.write(HELP + "\n")
        elif cmd in ("models", "list", "adapters"):
            for name, v in s.variants.items():
                self.write(f"{'*' if name == s.current else ' '} {name:<14} {v.kind:<10} {v.source}\n")
        elif cmd == "use":
            if not arg:
                raise BadInput("/use NAME (see /models)")
            s.switch(arg)
            self.write(f"now answering: {arg}\n")
        elif cmd == "load":
            name, sep, path = arg.partition("=")
            if not sep:
                raise BadInput("/load NAME=PATH")
            from workbench.targets import as_target

            v = s.load_adapter(as_target(path.strip(), name.strip()))
            self.write(f"loaded {v.name} ({v.kind}); /use {v.name} to chat with it\n")
        elif cmd in ("all", "compare"):
            results = s.compare(arg or None)
            width = max(len(n) for n, _ in results)
            self.write(f"prompt: {arg or s.last_prompt()}\n")
            for name, reply in results:
                mark = " [loop]" if reply.looped else ""
                self.write(f"{name:<{width}} │ {reply.text.replace(chr(10), ' ⏎ ')}{mark}\n")
        elif cmd == "clear":
            self.write("context cleared: the next prompt is sent alone\n" if s.clear_context()
                       else "the context is already empty\n")
        elif cmd == "context":
            self.write(s.context_info().describe() + "\n")
        elif cmd == "reset":
            s.reset()
            self.write("history cleared (new conversation)\n")
        elif cmd == "save":
            path = s.save(arg or None)
            self.write(f"saved conversation {s.conversation_id}: {path}\n")
        elif cmd == "system":
            if arg:
                s.set_system(arg)
            self.write(f"system prompt: {s.format.format.system!r}\n")
        elif cmd == "template":
            f = s.format
            self.write(f"template: {f.format.describe()} (from {f.source}; training used "
                       f"{f.training_format or 'unknown'})\n")
            if f.warning:
                self.write(f"warning: {f.warning}\n")
        else:
            raise BadInput(f"unknown command /{cmd} (/help lists them)")
        return None


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@click.command()
@click.argument("conversation", required=False, metavar="[ID]")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def conversations(conversation: str | None, as_json: bool) -> None:
    """List saved conversations; with ID, print that conversation.

    Reopen one with `workbench chat --open ID`.
    """
    from workbench import settings as user_settings
    from workbench.models import conversations as convs

    folder = convs.conversations_dir(user_settings.load())
    if conversation:
        conv = convs.find(conversation, folder)
        if as_json:
            emit_json({**conv.summary(), "header": conv.header, "messages": conv.messages,
                       "comparisons": conv.comparisons})
        else:
            click.echo(convs.to_markdown(conv))
        return
    items = convs.list_all(folder)
    if as_json:
        emit_json([c.summary() for c in items])
        return
    if not items:
        info(f"no conversations yet in {folder}")
        return
    import time

    rows = [{**c.summary(), "updated": time.strftime("%Y-%m-%d %H:%M", time.localtime(c.updated)),
             "variants": ",".join(c.summary()["variants"])} for c in items]
    click.echo(table(rows, ["id", "title", "turns", "variants", "updated"]))
