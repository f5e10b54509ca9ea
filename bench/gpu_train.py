"""Train one XTuner config through workbench's runs core and report what a user waits for: iter/s, peak memory,
final loss, the checkpoints, and the conversion of the last one.

    python bench/gpu_train.py --config workbench/configs/internlm2_chat_1_8b_qlora_self_cognition.py --model /tmp/m18 \
        --work-dir /tmp/wd/qlora --iters 200 --save-every 25 --budget-s 90 --train-site /tmp/trainsite --json OUT

What really runs: `workbench.runs.start_run` (the detached supervisor and `xtuner train`), `RunFollower` (the parsed
mmengine log), `stop_run` when the time budget is spent, `list_checkpoints`, `convert_run` (XTuner's pth_to_hf in a
child). Identity data is generated with `workbench.data.identity` (`workbench data identity`).

`--train-site DIR` (the unpacked bundle of bench/build_trainsite.sh) is put first on PYTHONPATH for the training and
conversion children only: this process keeps the machine's own transformers; it only appends DIR to its own
sys.path, after the machine's packages, so mmengine can read the config before the run starts. `--stub DIR` adds
a stand-in folder after it (for torchvision / scikit-image, where the machine has none).

`--cpu` is the dry run on a CPU: no 4-bit (model.llm.quantization_config=None) and fp32 (WORKBENCH_PRECISION).
The JSON file is rewritten (atomically) after each step, so a stage killed by its timeout still leaves its figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _gpu_memory_mib(pids: set[int]) -> float | None:
    """GPU memory the run's processes hold now (nvidia-smi; None where there is none)."""
    if not shutil.which("nvidia-smi") or not pids:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    total = 0.0
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and int(parts[0]) in pids:
            try:
                total += float(parts[1])
            except ValueError:
                pass
    return total


def complete(path: str) -> bool:
    """Whether a checkpoint was written to its end: torch.save writes a zip whose directory comes last, so a file
    cut short by a stop during the save does not open. (A DeepSpeed folder is taken as it is.)"""
    import zipfile

    if Path(path).is_dir():
        return True
    try:
        zipfile.ZipFile(path).close()
        return True
    except (OSError, zipfile.BadZipFile):
        return False


def _session_pids(sid: int) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.add(int(entry.name))
            except OSError:
                continue
    return pids


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--model", required=True, help="base model folder (WORKBENCH_MODEL)")
    ap.add_argument("--data", help="training data (WORKBENCH_DATA); default: generated identity data")
    ap.add_argument("--n", type=int, default=400, help="identity conversations to generate")
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--name", default=None)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--save-every", type=int, default=25)
    ap.add_argument("--log-every", type=int, default=5)
    ap.add_argument("--hook-tokens", type=int, default=8,
                    help="max_new_tokens of the config's EvaluateChatHook (random weights never stop early)")
    ap.add_argument("--hook-every", type=int, default=100)
    ap.add_argument("--hook-inputs", default="你是谁",
                    help="the hook's evaluation_inputs, comma-separated (it also chats at every checkpoint save)")
    ap.add_argument("--budget-s", type=float, default=90.0, help="stop the run (workbench stop) after this long")
    ap.add_argument("--convert-min-s", type=float, default=20.0,
                    help="convert only if this much of --total-s is left")
    ap.add_argument("--total-s", type=float, default=None, help="the whole script's budget (default: no limit)")
    ap.add_argument("--train-site", default=None)
    ap.add_argument("--stub", action="append", default=[])
    ap.add_argument("--cpu", action="store_true", help="dry run on a CPU: no 4-bit, fp32")
    ap.add_argument("--cfg-options", nargs="*", default=[])
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    t_start = time.monotonic()

    from workbench import atomic

    result: dict = {"config": args.config, "model": args.model, "iters": args.iters, "save_every": args.save_every,
                    "budget_s": args.budget_s, "cpu_dry_run": args.cpu}

    def save() -> None:
        result["wall_s"] = round(time.monotonic() - t_start, 2)
        atomic.write_json(args.json, result)

    # -- data (before the training site goes on PYTHONPATH) -------------------------------------------------
    data = args.data
    if not data:
        from workbench.data import identity as ident

        data = str(Path(args.work_dir).parent / "identity.json")
        if not Path(data).is_file():
            ds = ident.build(ident.Recipe(name="Tutu", org="Workbench Lab", n=args.n, seed=0, mix=None, ratio=0.0))
            ident.write(ds, data)
    result["data"] = data

    # -- the training children's environment ----------------------------------------------------------------
    env = {"WORKBENCH_MODEL": args.model, "WORKBENCH_DATA": data}
    if args.train_site:
        site = str(Path(args.train_site).resolve())
        parts = [site, *[str(Path(s).resolve()) for s in args.stub]]
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(parts + ([old] if old else []))  # children only
        sys.path.append(site)  # after this machine's own packages: mmengine reads the config here
    if "DeepSpeedStrategy" in Path(args.config).read_text(encoding="utf-8"):
        # DeepSpeed built into the config (no --deepspeed flag): start_run sets the one-process distributed
        # environment only for --deepspeed, and without it DeepSpeed looks for mpi4py. Set it here.
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        result["distributed_env_set_by_bench"] = True
    if args.cpu:
        env["WORKBENCH_PRECISION"] = "fp32"
        os.environ["WORKBENCH_PRECISION"] = "fp32"  # the conversion child builds the model from the config too
    options = [f"train_cfg.max_iters={args.iters}", f"default_hooks.checkpoint.interval={args.save_every}",
               f"default_hooks.logger.interval={args.log_every}", f"custom_hooks.1.max_new_tokens={args.hook_tokens}",
               f"custom_hooks.1.every_n_iters={args.hook_every}",
               f"custom_hooks.1.evaluation_inputs=[{args.hook_inputs}]"]
    if args.cpu:
        options.append("model.llm.quantization_config=None")
    options += args.cfg_options
    result["cfg_options"] = options

    from workbench.runs import registry
    from workbench.runs.control import stop_run
    from workbench.runs.launch import start_run

    warnings: list[str] = []
    t0 = time.monotonic()
    run = start_run(args.config, work_dir=args.work_dir, name=args.name, cfg_options=options, env=env,
                    warn=warnings.append)
    result.update(run_id=run.id, work_dir=run.work_dir, config_warnings=warnings, started_after_s=round(time.monotonic() - t0, 2))
    print(f"run {run.id} started: {run.work_dir}", flush=True)
    save()

    def on_term(signum, _frame):  # the stage's timeout: never leave the detached run behind
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        return _follow_and_convert(args, run, result, save, t0, t_start)
    except KeyboardInterrupt:
        result["interrupted"] = "SIGTERM or Ctrl-C: the run was stopped and this file may lack the conversion"
        try:
            if registry.get(run.id).status.value == "running":
                stop_run(run.id, grace={signal.SIGINT: 2.0, signal.SIGTERM: 2.0})
        except Exception as exc:
            result["stop_error"] = str(exc)
        save()
        return 130


def _follow_and_convert(args, run, result, save, t0, t_start) -> int:
    from workbench.runs import registry
    from workbench.runs.checkpoints import list_checkpoints
    from workbench.runs.control import stop_run
    from workbench.runs.convert import convert_run
    from workbench.runs.events import CheckpointEvent, ErrorEvent, MetricsEvent, RunEndEvent, SampleEvent
    from workbench.runs.follow import RunFollower

    follower = RunFollower(run, status_every=0.5)
    metrics: list[dict] = []
    result["metrics"] = metrics  # the same list: a save() after an interruption keeps what was parsed so far
    arrivals: list[tuple[float, int]] = []
    ckpt_events, errors, samples = [], [], 0
    end: RunEndEvent | None = None
    stopped_by_budget = False
    gpu_peak = None
    last_gpu_poll = 0.0
    first_metric_s = None
    while True:
        for ev in follower.poll():
            if isinstance(ev, MetricsEvent) and ev.mode == "train":
                now = time.monotonic() - t0
                first_metric_s = first_metric_s if first_metric_s is not None else now
                metrics.append({"iter": ev.iter, "loss": ev.loss, "time": ev.time, "data_time": ev.data_time,
                                "memory_mb": ev.memory, "lr": ev.lr, "grad_norm": ev.grad_norm})
                arrivals.append((now, ev.iter))
                print(f"  {ev.summary()}", flush=True)
            elif isinstance(ev, CheckpointEvent):
                ckpt_events.append(ev.iteration)
            elif isinstance(ev, SampleEvent):
                samples += 1
            elif isinstance(ev, ErrorEvent):
                errors.append(ev.summary())
                print(f"  error: {ev.summary()}", flush=True)
            elif isinstance(ev, RunEndEvent):
                end = ev
        if follower.done:
            break
        elapsed = time.monotonic() - t0
        if elapsed - last_gpu_poll >= 2.0:
            last_gpu_poll = elapsed
            try:
                used = _gpu_memory_mib(_session_pids(run.pid)) if run.pid else None
            except OSError:
                used = None
            if used:
                gpu_peak = max(gpu_peak or 0.0, used)
        if elapsed > args.budget_s and not stopped_by_budget:
            stopped_by_budget = True
            print(f"  budget of {args.budget_s:.0f} s spent: stopping run {run.id}", flush=True)
            try:
                stop_run(run.id, grace={signal.SIGINT: 15.0, signal.SIGTERM: 5.0})
            except Exception as exc:  # the run may have ended in between
                errors.append(f"stop: {exc}")
        time.sleep(0.5)
    follower.close()
    train_wall = time.monotonic() - t0
    run = registry.get(run.id)

    times = [m["time"] for m in metrics if m["time"]]
    steady = times[1:] if len(times) > 1 else times  # the first window holds warm-up (compile, first steps)
    mem = [m["memory_mb"] for m in metrics if m["memory_mb"]]
    iters_done = metrics[-1]["iter"] if metrics else 0
    wall_rate = None
    if len(arrivals) >= 2 and arrivals[-1][0] > arrivals[0][0]:
        wall_rate = (arrivals[-1][1] - arrivals[0][1]) / (arrivals[-1][0] - arrivals[0][0])
    result.update(
        status=run.status.value, exit_code=run.exit_code, reason=run.reason, stopped_by_budget=stopped_by_budget,
        train_wall_s=round(train_wall, 2), first_metrics_after_s=round(first_metric_s, 2) if first_metric_s else None,
        iters_done=iters_done,
        iter_per_s=round(1 / statistics.mean(steady), 3) if steady else None,
        iter_per_s_from_log_arrivals=round(wall_rate, 3) if wall_rate else None,
        s_per_iter_logged=[round(t, 4) for t in times],
        peak_memory_mb_mmengine=max(mem) if mem else None,
        peak_gpu_memory_mib_nvidia_smi=gpu_peak,
        final_loss=metrics[-1]["loss"] if metrics else None, first_loss=metrics[0]["loss"] if metrics else None,
        metrics=metrics, checkpoint_events=ckpt_events, samples_logged=samples, errors=errors,
        run_end=end.to_dict() if end else None,
    )
    ckpts = list_checkpoints(run.work_dir)
    result["checkpoints"] = [{"iter": c.iteration, "path": c.path, "bytes": c.size_bytes, "deepspeed": c.deepspeed,
                              "complete": complete(c.path)} for c in ckpts]
    ckpts = [c for c in ckpts if complete(c.path)]
    save()
    print(f"trained {iters_done}/{args.iters} iters in {train_wall:.1f} s, status {run.status.value}, "
          f"iter/s {result['iter_per_s']}, peak {result['peak_memory_mb_mmengine']} MB (mmengine), "
          f"{gpu_peak} MiB (nvidia-smi), final loss {result['final_loss']}, {len(ckpts)} checkpoints", flush=True)

    # -- convert the last checkpoint (XTuner's pth_to_hf in a child, through the runs core) ------------------
    left = (args.total_s - (time.monotonic() - t_start)) if args.total_s else None
    if not ckpts:
        result["convert"] = {"skipped": "no checkpoint"}
    elif left is not None and left < args.convert_min_s:
        result["convert"] = {"skipped": f"only {left:.0f} s left of --total-s"}
    else:
        t1 = time.monotonic()
        try:
            conv = convert_run(run.id, iteration=ckpts[-1].iteration, force=True)
            c = conv[-1]
            files = sorted(p.name for p in Path(c.adapter_path).iterdir())
            result["convert"] = {"iter": c.iteration, "adapter": c.adapter_path, "files": files,
                                 "seconds": round(time.monotonic() - t1, 2),
                                 "bytes": sum(p.stat().st_size for p in Path(c.adapter_path).iterdir())}
        except Exception as exc:
            result["convert"] = {"error": f"{type(exc).__name__}: {exc}", "seconds": round(time.monotonic() - t1, 2)}
        print(f"convert: {result['convert']}", flush=True)
    save()
    ok = run.status.value in ("finished", "stopped") and bool(ckpts) and "error" not in result.get("convert", {})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
