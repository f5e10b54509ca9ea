"""Read an XTuner config without starting training, and report what it will do and the traps in it.

The values are read where the training actually takes them from (the optimizer wrapper's
``accumulative_counts``, the checkpoint hook's ``interval`` and ``max_keep_ckpts``, the dataset's template),
not from the top-level variables a config author might have left stale, so ``--cfg-options`` overrides show.
The config is loaded with mmengine as XTuner loads it (`workbench.xtuner.config.load_config`, lazy-import mode);
the imported classes stay unbuilt placeholders, compared by name, so inspecting does not import xtuner or the model
code.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbench.data.checks import ConfigWarning, Hardware, detect_hardware, run_checks
from workbench.xtuner.config import deepspeed_json, load_config


@dataclass
class ConfigReport:
    """What an XTuner config will train, and the warnings for it (``warnings[i].code`` is stable)."""

    path: str
    model_path: str | None = None
    model_found: bool | None = None  # None: a hub id, not checked
    prompt_template: str | dict | None = None  # a PROMPT_TEMPLATE name, or the dict of a custom one
    system: str = ""
    evaluation_inputs: list[str] = field(default_factory=list)
    evaluation_freq: int | None = None
    generation_kwargs: dict = field(default_factory=dict)
    has_eval_hook: bool = False
    max_length: int | None = None
    batch_size: int | None = None
    accumulative_counts: int | None = None
    lr: float | None = None
    max_epochs: int | None = None
    max_iters: int | None = None
    save_steps: int | None = None
    save_total_limit: int | None = None
    deepspeed: str | None = None  # "ZeRO-2 (config)" / the --deepspeed JSON given / None
    precision: str = "fp32"  # fp16 | bf16 | fp32 (the lowest of the sources)
    precision_sources: dict[str, str] = field(default_factory=dict)
    quantization: str | None = None  # "4-bit nf4", "8-bit", None
    lora_r: int | None = None
    lora_alpha: int | None = None
    lora_target_modules: list[str] | None = None
    data_path: str | None = None
    data_found: bool | None = None
    data_recipe: dict | None = None  # the `workbench data identity` recipe beside the data file
    hardware: dict = field(default_factory=dict)
    warnings: list[ConfigWarning] = field(default_factory=list)

    @property
    def template_name(self) -> str | None:
        return self.prompt_template if isinstance(self.prompt_template, str) else None

    def codes(self) -> list[str]:
        return [w.code for w in self.warnings]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["warnings"] = [w.to_dict() for w in self.warnings]
        return d


# ---- reading lazy values -----------------------------------------------------------------------------


def _name(value: Any) -> str | None:
    """The name of a config value that stands for a class, function or attribute (lazy or built)."""
    if value is None:
        return None
    cls = type(value).__name__
    if cls == "LazyObject":
        imported = getattr(value, "_imported", None)
        module = getattr(value, "_module", "")
        return imported or (module if isinstance(module, str) else str(module)).split(".")[-1]
    if cls == "LazyAttr":
        return value.name
    if isinstance(value, str):
        return value.split(".")[-1]
    return getattr(value, "__name__", None) or str(value).split(".")[-1]


def _dtype(value: Any) -> str | None:
    name = _name(value)
    return {"float16": "fp16", "half": "fp16", "bfloat16": "bf16", "float32": "fp32", "float": "fp32",
            "auto": "auto"}.get(name or "", None)


def _walk(obj: Any):
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _walk(v)


def _find(obj: Any, key: str) -> Any:
    """The first value of `key` in any dict nested in `obj` (depth-first), or None."""
    for d in _walk(obj):
        if key in d:
            return d[key]
    return None


def _template(value: Any) -> str | dict | None:
    if value is None:
        return None
    if isinstance(value, dict):
        from workbench.xtuner.templates import match_entry

        plain = {k: (list(v) if isinstance(v, tuple) else v) for k, v in value.items()}
        return match_entry(plain) or plain  # a template written out as a dict: its name when it is a known one
    return _name(value)


def _first_data_file(files: Any) -> str | None:
    if isinstance(files, str):
        return files
    if isinstance(files, dict):
        return _first_data_file(files.get("train") or next(iter(files.values()), None))
    if isinstance(files, (list, tuple)) and files:
        return _first_data_file(files[0])
    return None


#: Inspection code for more GPUs requested (`--gpus`, NPROC_PER_NODE) than this machine shows.
GPUS_UNAVAILABLE = "gpus_unavailable"


def _deepspeed(cfg: dict, deepspeed: str | None) -> tuple[str | None, dict | None]:
    """(description, DeepSpeed JSON) from the config's strategy or the --deepspeed argument."""
    strategy = cfg.get("strategy")
    if isinstance(strategy, dict) and "DeepSpeed" in (_name(strategy.get("type")) or ""):
        ds = strategy.get("config") or {}
        stage = (ds.get("zero_optimization") or {}).get("stage")
        return f"ZeRO-{stage} (in the config)" if stage is not None else "DeepSpeed (in the config)", ds
    if not deepspeed:
        return None, None
    ds = deepspeed_json(deepspeed)
    stage = (ds.get("zero_optimization") or {}).get("stage")
    return f"ZeRO-{stage} ({deepspeed})", ds


def _ds_precision(ds: dict, hw: Hardware) -> str:
    """The precision a DeepSpeed JSON resolves to, resolving "auto" as `xtuner train` does: fp16 "auto" is
    on wherever the device is available (the CPU too, which is why the stock ZeRO configs fail there), bf16
    "auto" where the device supports it, and bf16 wins when both end up on."""
    fp16_v = (ds.get("fp16") or {}).get("enabled", False)
    bf16_v = (ds.get("bf16") or {}).get("enabled", False)
    fp16 = True if fp16_v == "auto" else bool(fp16_v)
    bf16 = hw.bf16 if bf16_v == "auto" else bool(bf16_v)
    if fp16 and bf16:
        fp16 = False
    return "fp16" if fp16 else "bf16" if bf16 else "fp32"


def inspect_config(path: str | Path, *, deepspeed: str | None = None, cfg_options: dict | None = None,
                   hardware: Hardware | None = None, gpus: int | None = None, loaded=None) -> ConfigReport:
    """Read the XTuner config at `path` and report its settings and the seeds' traps.

    deepspeed: the ``--deepspeed`` argument the run will get (a JSON path or an XTuner built-in name).
    cfg_options: ``--cfg-options`` already parsed (`workbench.xtuner.config.parse_cfg_options`).
    hardware: the training machine (default: this one, detected).
    gpus: processes per node the run will start (``--gpus``/NPROC_PER_NODE); more than 1 needs that many GPUs.
    loaded: the config as `workbench.xtuner.config.load_config` already loaded it with `cfg_options` (not loaded again).
    Raises BadInput (one line) if the file is missing or does not load.
    """
    path = Path(path)
    cfg = (loaded if loaded is not None else load_config(path, cfg_options))._to_lazy_dict()
    hw = hardware or detect_hardware()
    r = ConfigReport(path=str(path), hardware=asdict(hw))

    model = cfg.get("model") or {}
    llm_cfg = model.get("llm")
    llm = llm_cfg if isinstance(llm_cfg, dict) else {}
    r.model_path = llm.get("pretrained_model_name_or_path") or cfg.get("pretrained_model_name_or_path")
    if isinstance(r.model_path, str):
        local = r.model_path.startswith(("/", "./", "../", "~")) or Path(r.model_path).expanduser().exists()
        r.model_found = Path(r.model_path).expanduser().exists() if local else None

    loader = cfg.get("train_dataloader") or {}
    dataset = loader.get("dataset") or {}
    r.batch_size = loader.get("batch_size")
    tmf = _find(dataset, "template_map_fn")
    r.prompt_template = _template(tmf.get("template") if isinstance(tmf, dict) else cfg.get("prompt_template"))
    r.max_length = _find(dataset, "max_length") or cfg.get("max_length")
    data_file = _first_data_file(_find(dataset, "data_files"))
    if data_file:
        data = Path(data_file).expanduser()
        if not data.is_absolute() and not data.exists() and (path.parent / data).exists():
            data = path.parent / data  # relative to the config's folder rather than to where we run
        r.data_path = str(data)
        r.data_found = data.exists()
        if r.data_found:
            from workbench.data.identity import find_recipe

            r.data_recipe = find_recipe(data)

    optim = cfg.get("optim_wrapper") or {}
    r.lr = (optim.get("optimizer") or {}).get("lr", cfg.get("lr"))
    r.accumulative_counts = optim.get("accumulative_counts", 1)
    strategy = cfg.get("strategy")
    if isinstance(strategy, dict) and "gradient_accumulation_steps" in strategy:
        r.accumulative_counts = strategy["gradient_accumulation_steps"]
    train_cfg = cfg.get("train_cfg") or {}
    r.max_epochs, r.max_iters = train_cfg.get("max_epochs"), train_cfg.get("max_iters")

    ckpt = (cfg.get("default_hooks") or {}).get("checkpoint") or {}
    r.save_steps = ckpt.get("interval")
    r.save_total_limit = ckpt.get("max_keep_ckpts", -1)

    hook = next((h for h in cfg.get("custom_hooks") or [] if _name(h.get("type")) == "EvaluateChatHook"), None)
    if hook is not None:
        r.has_eval_hook = True
        inputs = hook.get("evaluation_inputs") or []
        r.evaluation_inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        r.evaluation_freq = hook.get("every_n_iters")
        gk = hook.get("generation_kwargs")
        r.generation_kwargs = dict(gk) if isinstance(gk, dict) else {}
        r.system = hook.get("system") or ""
    r.system = r.system or cfg.get("SYSTEM") or ""

    lora = model.get("lora") if isinstance(model.get("lora"), dict) else None
    if lora:
        r.lora_r, r.lora_alpha = lora.get("r"), lora.get("lora_alpha")
        tm = lora.get("target_modules")
        r.lora_target_modules = [tm] if isinstance(tm, str) else (list(tm) if tm else None)

    quant = llm.get("quantization_config") if isinstance(llm, dict) else None
    sources: dict[str, str] = {}
    if isinstance(quant, dict):
        if quant.get("load_in_4bit"):
            r.quantization = f"4-bit {quant.get('bnb_4bit_quant_type', 'fp4')}"
            compute = _dtype(quant.get("bnb_4bit_compute_dtype"))
            if compute in ("fp16", "bf16"):
                sources["bnb_4bit_compute_dtype"] = compute
        elif quant.get("load_in_8bit"):
            r.quantization = "8-bit"
    dt = _dtype(llm.get("torch_dtype")) if isinstance(llm, dict) else None
    if dt in ("fp16", "bf16"):
        sources["torch_dtype"] = dt
    r.deepspeed, ds = _deepspeed(cfg, deepspeed)
    if ds is not None:
        sources["deepspeed"] = _ds_precision(ds, hw)
    elif _name(optim.get("type")) == "AmpOptimWrapper":
        sources["AmpOptimWrapper"] = _dtype(optim.get("dtype")) or "fp16"  # mmengine's AMP defaults to fp16
    r.precision_sources = {k: v for k, v in sources.items() if v and v != "fp32"}
    vals = set(r.precision_sources.values())
    r.precision = "fp16" if "fp16" in vals else "bf16" if "bf16" in vals else "fp32"

    r.warnings = run_checks(r, hw) + _stale_top_level_options(cfg, cfg_options)
    if gpus is not None and gpus > 1 and gpus > hw.gpus:
        # torchrun starts one process per GPU and each calls torch.cuda.set_device: it dies at iteration 0
        r.warnings.insert(0, ConfigWarning(
            GPUS_UNAVAILABLE, f"{gpus} GPUs requested (--gpus / NPROC_PER_NODE) but this machine shows "
                              f"{hw.gpus if hw.cuda else 'none (no CUDA)'}"))
    return r


def _stale_top_level_options(cfg: dict, cfg_options: dict | None) -> list[ConfigWarning]:
    """`--cfg-options lr=1e-4` changes only the top-level name: the config copied its value into
    `optim_wrapper.optimizer.lr` when it was read, and training reads that copy. Say which key to set."""
    out = []
    for key, value in (cfg_options or {}).items():
        if "." in key:
            continue
        stale = []
        for name, sub in cfg.items():
            if name == key:
                continue
            stale += [(f"{name}.{path}", v) for path, v in _paths(sub, key) if v != value]
        if stale:
            where_, old = stale[0]
            out.append(ConfigWarning(
                "cfg_option_top_level",
                f"--cfg-options {key}={value} changes only the top-level name; training reads {where_} "
                f"(still {old!r}): set --cfg-options {where_}={value}"))
    return out


def _paths(obj: Any, key: str, prefix: str = ""):
    """(dotted path, value) of every dict entry named `key` nested in `obj` (dicts only, as mmengine keys are)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            path = f"{prefix}{k}"
            if k == key:
                yield path, v
            yield from _paths(v, key, path + ".")


_FIELDS = [
    ("model", "model_path"), ("prompt template", "prompt_template"), ("SYSTEM", "system"),
    ("evaluation_inputs", "evaluation_inputs"), ("evaluation_freq", "evaluation_freq"),
    ("max_length", "max_length"), ("batch size", "batch_size"), ("accumulative_counts", "accumulative_counts"),
    ("lr", "lr"), ("max_epochs", "max_epochs"), ("max_iters", "max_iters"), ("save_steps", "save_steps"),
    ("save_total_limit", "save_total_limit"), ("deepspeed", "deepspeed"), ("precision", "precision"),
    ("quantization", "quantization"), ("LoRA r", "lora_r"), ("LoRA alpha", "lora_alpha"), ("data", "data_path"),
]


def format_report(r: ConfigReport) -> str:
    """The human-readable report (`workbench inspect` without --json)."""
    rows = []
    for label, attr in _FIELDS:
        v = getattr(r, attr)
        if attr == "model_path" and r.model_found is False:
            v = f"{v} (not found)"
        if attr == "precision" and r.precision_sources:
            v = f"{v} (" + ", ".join(f"{k}: {s}" for k, s in r.precision_sources.items()) + ")"
        if attr == "data_path" and r.data_recipe:
            rec = r.data_recipe
            mix = f", {rec['mix']['ratio']:.0%} general" if rec.get("mix") else ", identity only"
            v = f"{v} (recipe: {rec['name']}, {rec['stats']['conversations']} conversations{mix}, seed {rec['seed']})"
        if v is None or v == "" or v == []:
            v = "-"
        if isinstance(v, list):
            v = " | ".join(map(str, v))
        rows.append((label, re.sub(r"\s+", " ", str(v))))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    if r.warnings:
        lines.append("")
        lines += [f"warning [{w.code}]: {w.message}" for w in r.warnings]
    else:
        lines += ["", "no warnings"]
    return "\n".join(lines)
