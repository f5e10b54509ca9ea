"""What answers: one resolver for every front end (`workbench chat`, `workbench eval`, the TUI's Chat, Eval and
Runs screens).

`resolve` turns a source (a run, a work dir, adapters or merged models) plus the user's overrides and settings
into a `Resolved`: the base model, the `Target`s (base first), the training config, whether model code may run,
and the {name}/{org} variables of the run's dataset (`Target` is defined in `workbench.models.target`, below the
runs core, so that a chat session can hold one). Two policies live here and nowhere else:
- trust_remote_code: the flag, else the training config's ``trust_remote_code``, else the setting;
- naming: a checkpoint is ``iter_N`` (its converted adapter too), an adapter its folder's name, a merged model
  its folder's name; only when two targets would share a name is the run's name put in front
  (``<run name>-iter_N``), so the same checkpoint is called the same in chat, eval and saved conversations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import BadInput
from workbench.models.target import ADAPTER, BASE, CHECKPOINT, KINDS, MERGED, Target, iteration_of
from workbench.xtuner.config import TrainingConfig, read_training_config
from workbench.xtuner.workdir import WorkDir, is_checkpoint

# -- naming ---------------------------------------------------------------------------------------------------

def target_name(source: str | Path) -> str:
    """A target's own name: ``iter_N`` for a checkpoint or its converted adapter (``hf/iter_N``), else the
    folder's name."""
    p = Path(source).expanduser()
    return p.stem if p.suffix == ".pth" else p.name


def _safe(name: str) -> str:
    """In the characters an adapter name may hold (torch module names: no dot)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _owner(source: str) -> tuple[str, str]:
    """(name, id) of the run that wrote `source` (a checkpoint, or an adapter converted into its work dir's
    ``hf/``), else (the work dir's folder name, "")."""
    p = Path(source).expanduser()
    wd = p.parent.parent if p.parent.name in ("hf", "merged") else p.parent
    try:
        from workbench.runs import registry

        runs = registry.runs_in(wd)
        if len(runs) > 1 and p.suffix == ".pth":
            from workbench.runs.launch import checkpoint_owner

            owner = checkpoint_owner(p)
            runs = [owner] if owner else runs
    except Exception:  # noqa: BLE001 - naming is a courtesy: a registry problem falls back to the folder
        runs = []
    if runs:
        return runs[-1].name, runs[-1].id
    return wd.name, ""


def unique_names(targets: Sequence[Target], taken: Mapping[str, str] | None = None,
                 keep: Sequence[str] = ()) -> list[Target]:
    """`targets` with the naming rule applied: a name shared by targets of different sources (or already `taken`
    by another source: name -> source) gets its run's name in front, ``<run name>-iter_N``, and the run id as well
    when the runs share their name (the same config started twice). Names in `keep` (given by the user) stay."""
    from dataclasses import replace

    taken = {**dict(taken or {}), **{t.name: str(t.source) for t in targets if t.name in keep}}
    sources: dict[str, set[str]] = {}
    for t in targets:
        sources.setdefault(t.name, set()).add(str(t.source))
    for name, src in taken.items():
        if name in sources:
            sources[name].add(src)
    out: list[Target] = []
    used = set(taken)
    for t in targets:
        name = t.name
        if len(sources[t.name]) > 1 and t.kind != BASE and t.source and t.name not in keep:
            owners = {src: _owner(src) for src in sources[t.name]}
            run_name, run_id = owners[str(t.source)]
            twins = [o for src, o in owners.items() if src != str(t.source) and o[0] == run_name]
            name = f"{_safe(run_name)}-{run_id}-{t.name}" if twins and run_id else f"{_safe(run_name)}-{t.name}"
            base_name, n = name, 2
            while name in used:
                name, n = f"{base_name}-{n}", n + 1
        used.add(name)
        out.append(replace(t, name=name) if name != t.name else t)
    return out


# -- resolving ------------------------------------------------------------------------------------------------

@dataclass
class Resolved:
    """A source with everything found: the base, the targets (base first), the training config, trust and vars."""

    base: str | None
    targets: list[Target]
    config: str | None  # the training config (a work dir's copy, --config, or the one beside an adapter)
    trust: bool  # trust_remote_code, decided
    variables: dict[str, str] = field(default_factory=dict)
    work_dir: str | None = None
    source: str = "base"  # what was resolved, for reports ("run 7f3a2c", "adapter x", ...)
    log_path: str | None = None
    #: Checkpoints left out (damaged), one line each.
    warnings: list[str] = field(default_factory=list)
    #: Where the base and trust_remote_code came from, one line each (chat shows them as it loads).
    notes: list[str] = field(default_factory=list)
    #: The data file the variables came from (its recipe), None when they were given or not found.
    variables_from: str | None = None

    @property
    def training(self) -> TrainingConfig | None:
        return read_training_config(self.config) if self.config else None


def find_run(ref: str):
    """A run reference (id, id prefix, name) or a work dir: (the registered `Run` or None, its work dir).

    A folder holding checkpoints or a config copy is taken as it is (with its newest registered run, if any)."""
    from workbench.runs import registry

    path = Path(ref).expanduser()
    if path.is_dir() and (WorkDir(path).checkpoints() or WorkDir(path).config()):
        runs = registry.runs_in(path)
        return (runs[-1] if runs else None), path
    run = registry.get(ref)
    return run, Path(run.work_dir)


def parse_iters(text: str | None) -> tuple[set[int], bool] | None:
    """``"10,20,last"`` -> ({10, 20}, True); None selects every checkpoint."""
    if not text:
        return None
    wanted, last = set(), False
    for part in text.split(","):
        part = part.strip()
        if part == "last":
            last = True
        elif part.isdigit():
            wanted.add(int(part))
        elif part:
            raise BadInput(f"--iters {text!r}: {part!r} is not an iteration number or 'last'")
    return wanted, last


def _select(ckpts: list, iters: str | None, where: str) -> list:
    if not ckpts:
        raise BadInput(f"{where}: no checkpoints (iter_*.pth) to score")
    sel = parse_iters(iters)
    if sel is None:
        return ckpts
    wanted, last = sel
    chosen = [c for c in ckpts if c.iteration in wanted or (last and c is ckpts[-1])]
    missing = sorted(wanted - {c.iteration for c in ckpts})
    if missing:
        have = ", ".join(str(c.iteration) for c in ckpts)
        raise BadInput(f"--iters: no checkpoint at iteration {', '.join(map(str, missing))} in {where} (have {have})")
    return chosen


def _base_of(config: str | Path | None) -> str | None:
    if not config:
        return None
    try:
        return read_training_config(config).base_model or None
    except BadInput:
        return None


def _base_from_adapter(path: Path) -> str | None:
    cfg = path / "adapter_config.json"
    if not cfg.is_file():
        return None
    try:
        return json.loads(cfg.read_text(encoding="utf-8")).get("base_model_name_or_path") or None
    except (OSError, ValueError):
        return None


def _config_beside(p: Path) -> str | None:
    """The training config that made an adapter: its work dir's copy for an iter_N.pth, the copy `xtuner convert
    pth_to_hf` leaves in an adapter folder (``xtuner_config.py``)."""
    if p.suffix == ".pth":
        found = WorkDir(p.parent).config()
        return str(found) if found else None
    return str(p / "xtuner_config.py") if (p / "xtuner_config.py").is_file() else None


def variables_of(config: str | Path | None) -> tuple[dict[str, str], str | None]:
    """{name, org} from the recipe (``<data>.recipe.json``, written by `workbench data`) beside the training
    data a config names, and that data file's path; ({}, None) when there is none."""
    from workbench.data.identity import find_recipe

    try:
        files = read_training_config(config).data_files() if config else []
    except BadInput:
        files = []
    for data in files:
        raw = find_recipe(data)
        found = {k: raw[k] for k in ("name", "org") if raw and isinstance(raw.get(k), str) and raw[k]}
        if found:
            return found, str(data)
    return {}, None


def resolve(*, run: str | None = None, work_dir: str | None = None,
            adapters: Sequence[str | tuple[str, str]] = (), merged: Sequence[str | tuple[str, str]] = (),
            base: str | None = None, config: str | None = None, iters: str | None = None,
            trust_remote_code: bool | None = None, variables: Mapping[str, str] | None = None, settings=None,
            checkpoints: bool = True, check: bool = False, local_base: bool = False,
            taken: Mapping[str, str] | None = None) -> Resolved:
    """Find the base, the training config and the targets of one source: `run` (a run reference, or a work dir),
    `work_dir` (``--checkpoints``), `adapters` (paths, or (name, path) pairs whose name is kept; an empty name is
    derived), `merged` (the same), or only `base`; `base` and `config` override what the source says.

    checkpoints: list the run's checkpoints (``iters``: only "10,20,last"); check: leave damaged ones out (named
    in `warnings`); local_base: a base taken from a training config must be a folder here (chat will not fetch
    one from a hub). trust: `trust_remote_code`, else the training config's, else `settings.trust_remote_code`
    (settings: the front end's `Settings`; None reads them). variables: given, else the dataset recipe's.
    Names follow the naming rule (`unique_names`), `taken` being what a session has loaded already.
    """
    if sum(map(bool, (run, work_dir, adapters, merged))) > 1:
        raise BadInput("give one of --run, --checkpoints, --adapter or --model")
    notes: list[str] = []
    given_names: list[str] = []  # adapter names the user chose: kept as they are
    targets: list[Target] = []
    skipped: list[str] = []
    wd_path, log_path, registered = None, None, None
    source = "base"
    if run or work_dir:
        if run:
            registered, wd_path = find_run(run)
            where = f"run {registered.id} ({wd_path})" if registered else str(wd_path)
            source = f"run {registered.id}" if registered else f"checkpoints {wd_path}"
            log_path = registered.log_path if registered else None
        else:
            assert work_dir is not None  # `run or work_dir`, and not run
            wd_path = Path(work_dir)
            if not wd_path.is_dir():
                raise BadInput(f"--checkpoints {work_dir}: not a folder")
            where, source = str(work_dir), f"checkpoints {work_dir}"
        # The copy mmengine dumped into the work dir is what really trained (cfg-options and environment
        # variables resolved); the run's own config copy is the fallback.
        dumped = WorkDir(wd_path).config()
        config = config or (str(dumped) if dumped else None)
        if config is None and registered is not None and Path(registered.config_copy).is_file():
            config = str(registered.config_copy)
        if checkpoints:
            from workbench.runs.checkpoints import list_checkpoints, run_checkpoints, split_damaged

            # A run's own checkpoints only (a shared work dir holds other runs' too)
            chosen = _select(run_checkpoints(registered) if registered else list_checkpoints(wd_path), iters, where)
            if check:  # a damaged one is left out and named, and the others still answer
                chosen, damaged = split_damaged(chosen)
                if damaged and not chosen:
                    raise BadInput(damaged[0])
                skipped = [f"left out (damaged): {why}" for why in damaged]
            targets += [Target(f"iter_{c.iteration}", CHECKPOINT, str(c.path), c.iteration, config) for c in chosen]
        found_base = _base_of(dumped) or _base_of(config)
    elif adapters:
        found_base = None
        for a in adapters:
            name, a = a if isinstance(a, tuple) else ("", a)
            if name and name in given_names:
                raise BadInput(f"--adapter {name}: the name is used twice")
            given_names.append(name)
            p = Path(a).expanduser()
            if not p.exists():
                raise BadInput(f"--adapter {a}: not found")
            cfg = config or _config_beside(p)
            if is_checkpoint(p) or p.suffix == ".pth":  # an XTuner checkpoint (a file, or a DeepSpeed folder)
                kind = CHECKPOINT
                found_base = found_base or _base_of(cfg)
            else:
                if not (p / "adapter_config.json").is_file():
                    raise BadInput(f"--adapter {a}: neither an iter_N.pth nor a PEFT adapter folder "
                                   "(no adapter_config.json)")
                kind = ADAPTER
                found_base = found_base or _base_from_adapter(p) or _base_of(cfg)
            targets.append(Target(name or target_name(p), kind, str(a), iteration_of(p.name), cfg))
        config = config or next((t.config for t in targets if t.config), None)
        source = "adapter " + ", ".join(str(a[1] if isinstance(a, tuple) else a) for a in adapters)
    elif merged:
        found_base = None
        for m in merged:
            name, m = m if isinstance(m, tuple) else ("", m)
            if not Path(m).expanduser().is_dir():
                raise BadInput(f"--model {m}: not a model folder")
            targets.append(Target(name or Path(m).name, MERGED, str(m)))
        source = "model " + ", ".join(str(m[1] if isinstance(m, tuple) else m) for m in merged)
    else:
        found_base = None
    if base is None and found_base is not None:
        if local_base and not Path(found_base).expanduser().is_dir():
            raise BadInput(f"BASE: give the base model folder (or --merged PATH); the training config names "
                           f"{found_base!r}, which is not here")
        base = found_base
        notes.append(f"base: {base} (from the training config {config})" if config else f"base: {base}")
    training = read_training_config(config) if config else None
    trust = _trust(trust_remote_code, training, settings, notes)
    given = dict(variables or {})
    var_data = None
    if not given and config:
        given, var_data = variables_of(config)
    all_targets = ([Target(BASE, BASE, str(base))] if base is not None else []) + targets
    return Resolved(base, unique_names(all_targets, taken, keep=[n for n in given_names if n]), config, trust, given,
                    str(wd_path) if wd_path else None, source, log_path, skipped, notes, var_data)


def _trust(flag: bool | None, training: TrainingConfig | None, settings, notes: list[str]) -> bool:
    """trust_remote_code: the flag, else the training config's, else the setting (said in `notes` when on)."""
    if flag is not None:
        return flag
    if training is not None and training.trust_remote_code is not None:
        if training.trust_remote_code:
            notes.append(f"trust_remote_code: on (set by the training config {training.path})")
        return training.trust_remote_code
    if settings is None:
        from workbench import settings as user_settings

        settings = user_settings.load()
    if settings.trust_remote_code:
        notes.append("trust_remote_code: on (settings.toml)")
    return bool(settings.trust_remote_code)


def require_base(res: Resolved, *, merged: bool = False) -> None:
    """Eval's rule: a source that needs a base has one, and a base given as an absolute path exists."""
    if res.base is None and not merged:
        raise BadInput("no base model: give --base PATH (it is not in the training config or adapter_config.json)")
    base = res.base
    if base is not None and not Path(base).exists() and "/" in base and Path(base).is_absolute():
        raise BadInput(f"base model {base}: not found (give --base PATH)")


def resolve_spec(spec, settings=None, *, taken: Mapping[str, str] | None = None) -> Resolved:
    """`resolve` for a chat `workbench.models.session.ModelSpec`: its adapters ((name, path) pairs; an empty name
    follows the naming rule), its run's checkpoints (``iter_N``) and its merged model (``merged``), in that order
    after the base."""
    common = dict(config=spec.config, trust_remote_code=spec.trust_remote_code, settings=settings, local_base=True)
    if spec.run:  # a damaged checkpoint of the run is left out and named; the others still answer
        res = resolve(run=spec.run, base=spec.base, taken=taken, check=True, **common)
        if spec.adapters:
            own = resolve(adapters=list(spec.adapters), base=res.base, taken=taken, **common)
            adapters = [t for t in own.targets if t.kind != BASE]
            names = {t.name for t in adapters}
            head = [t for t in res.targets if t.kind == BASE]
            res.targets = [*head, *adapters, *(t for t in res.targets if t.kind != BASE and t.name not in names)]
    elif spec.adapters:
        res = resolve(adapters=list(spec.adapters), base=spec.base, taken=taken, **common)
    else:
        res = resolve(base=spec.base, taken=taken, **common)
    if spec.merged:
        res.targets.append(Target("merged", MERGED, str(spec.merged)))
    if res.base is None and spec.merged is None:
        raise BadInput("BASE: give the base model folder (or --merged PATH)")
    return res


def as_target(source: str | Path, name: str = "", config: str | None = None) -> Target:
    """An adapter or checkpoint to attach (`/load NAME=PATH`): its kind, and its name unless one is given."""
    p = Path(source).expanduser()
    kind = CHECKPOINT if is_checkpoint(p) or p.suffix == ".pth" else ADAPTER
    return Target(name or target_name(p), kind, str(source), iteration_of(p.name), config or _config_beside(p))


__all__ = ["ADAPTER", "BASE", "CHECKPOINT", "KINDS", "MERGED", "Resolved", "Target", "as_target", "find_run",
           "iteration_of", "parse_iters", "require_base", "resolve", "resolve_spec", "target_name", "unique_names",
           "variables_of"]
