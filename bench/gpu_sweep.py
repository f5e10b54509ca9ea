"""The eval sweep figure of issue 8: `workbench eval --run RUN` over N checkpoints x P prompts x T new tokens, versus the
naive loop a user runs without workbench (per checkpoint: `xtuner convert pth_to_hf`, reload base + adapter, one
prompt at a time), measured in the same process.

    python bench/gpu_sweep.py --run qlora --checkpoints 8 --prompts 200 --max-new-tokens 128 \
        --train-json $OUT/train_qlora.json --json $OUT/sweep.json
    python bench/gpu_sweep.py --work-dir /tmp/wd/fake --checkpoints 8 --prompts 200 --max-new-tokens 128 \
        --reader-convert --budget-s 120 --json $OUT/sweep.json      (bench/device_sweep.sh: no training first)

The sweep is the eval core itself (`workbench.evals.evaluate.sweep_report`, what `workbench eval --run` calls, or
`workbench eval --checkpoints WORK_DIR` with --work-dir): base loaded once, checkpoints attached from their iter_N.pth,
all prompts of a target in one batch (--batch-size).
Random weights rarely stop on their own but fall into repetition loops, which the backend's loop detector would
cut: the detector is switched off here (--no-fixed-length keeps it), so every reply runs the full token budget;
the tokens really generated are counted and reported.

The naive loop is far too slow to run whole, so one checkpoint of it is measured: its conversion (XTuner's
pth_to_hf through the runs core, in a child: measured here with --measure-convert; or, with --reader-convert where
xtuner is not installed, workbench's own reader turning iter_N.pth into a PEFT folder, a lower bound on pth_to_hf,
which also loads the base model; otherwise the conversion time gpu_train.py measured for this run in the same
device session, read from --train-json), a fresh load of the base
plus the adapter with plain transformers + peft, and --naive-prompts prompts one at a time with plain `generate`
(min_new_tokens = max_new_tokens: the same fixed length). Then
    naive = checkpoints x (convert + reload + prompts x mean seconds a prompt)
is an extrapolation, printed beside the measured parts.

--budget-s bounds the whole script: the sweep stops after a target when the next one would leave less than
--naive-reserve-s for the naive part (the targets not run are then extrapolated from the checkpoint targets that
ran, and said so), and the naive part runs its second and later prompts only while they fit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
ROOT = Path(__file__).resolve().parents[1]


def _evalset(path: Path, n: int) -> int:
    """`n` unique prompts from the shipped eval sets (identity and general); {name}/{org} stay for --var."""
    rows = []
    for name in ("identity", "general"):
        for line in (ROOT / "workbench" / "evalsets" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    out = []
    for i in range(n):
        src = rows[i % len(rows)]
        rnd = i // len(rows)  # past the shipped prompts: the same ones again, marked so each prompt is unique
        item = {"id": f"{src['id']}-{rnd}" if rnd else src["id"], "kind": src["kind"],
                "prompt": src["prompt"] + (f" ({rnd})" if rnd else ""), "answers": list(src["answers"])}
        for key in ("lang", "aspect", "required"):
            if key in src:
                item[key] = src[key]
        out.append(item)
    from workbench import atomic

    atomic.write_jsonl(path, out)
    return len(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run id, name or work dir (the QLoRA run)")
    src.add_argument("--work-dir", help="an XTuner work dir, registered or not (`workbench eval --checkpoints`)")
    ap.add_argument("--checkpoints", type=int, default=8, help="the last N checkpoints of the run")
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--no-fixed-length", action="store_true", help="keep the backend's loop detector")
    ap.add_argument("--naive-prompts", type=int, default=3)
    ap.add_argument("--naive-iter", type=int, default=None, help="checkpoint of the naive part (default: the last)")
    ap.add_argument("--measure-convert", action="store_true", help="convert one checkpoint here (else --train-json)")
    ap.add_argument("--reader-convert", action="store_true",
                    help="the naive conversion measured as workbench's reader writing a PEFT folder (no xtuner)")
    ap.add_argument("--budget-s", type=float, default=None, help="seconds for the whole script (see above)")
    ap.add_argument("--naive-reserve-s", type=float, default=30.0, help="kept for the naive part under --budget-s")
    ap.add_argument("--train-json", type=Path, help="gpu_train.py's JSON for this run (its convert seconds)")
    ap.add_argument("--train-site", default=None,
                    help="the training bundle: appended to sys.path (mmengine unpickles iter_N.pth) and first on "
                         "PYTHONPATH for a conversion child")
    ap.add_argument("--stub", action="append", default=[])
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    t_start = time.monotonic()
    if args.train_site:
        import os

        site = str(Path(args.train_site).resolve())
        sys.path.append(site)  # after this machine's own packages: only what they lack (mmengine) comes from it
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join([site, *map(str, args.stub), *([old] if old else [])])

    import torch

    from workbench import atomic
    from workbench.runs import registry
    from workbench.runs.checkpoints import list_checkpoints

    result: dict = {"run": args.run, "work_dir": args.work_dir, "prompts": args.prompts,
                    "max_new_tokens": args.max_new_tokens,
                    "batch_size": args.batch_size, "fixed_length": not args.no_fixed_length}

    def save() -> None:
        result["wall_s"] = round(time.monotonic() - t_start, 2)
        atomic.write_json(args.json, result)

    from gpu_train import complete  # bench/ is this script's folder: sys.path[0]

    if args.run:
        run = registry.get(args.run)
        run_id, work_dir = run.id, run.work_dir
    else:
        run_id, work_dir = None, str(Path(args.work_dir).resolve())
    found = list_checkpoints(work_dir)
    ckpts = [c for c in found if complete(c.path)]
    if len(ckpts) < len(found):
        result["incomplete_checkpoints_skipped"] = [c.iteration for c in found if not complete(c.path)]
    chosen = ckpts[-args.checkpoints:]
    if not chosen:
        result["error"] = f"{f'run {run_id}' if run_id else 'work dir'}: no checkpoints in {work_dir}"
        save()
        print(result["error"])
        return 1
    iters = [c.iteration for c in chosen]
    result.update(run_id=run_id, work_dir=work_dir, checkpoints_swept=iters,
                  checkpoints_available=[c.iteration for c in ckpts])
    if len(chosen) < args.checkpoints:
        result["note"] = f"only {len(chosen)} checkpoints: the figures below are for {len(chosen)}"
    tmp = Path(tempfile.mkdtemp(prefix="wb-sweep-"))
    evalset = tmp / "sweep_prompts.jsonl"
    n_items = _evalset(evalset, args.prompts)

    # -- the sweep (the eval core) ------------------------------------------------------------------------
    import workbench.evals.sweep as sweep_mod
    import workbench.models.hf as hf
    from workbench.evals.evaluate import Request, sweep_report

    if not args.no_fixed_length:
        class _NoLoops:
            def __init__(self, *a, **k):
                pass

            def __call__(self, ids) -> bool:
                return False

        hf.LoopDetector = _NoLoops
    captured: list = []
    original = sweep_mod.generate

    def capture(*a, **k):
        out = original(*a, **k)
        captured.extend(out)
        return out

    sweep_mod.generate = capture
    req = Request(run=run_id, checkpoints=None if run_id else work_dir, iters=",".join(str(i) for i in iters),
                  evalsets=[str(evalset)],
                  variables={"name": "Tutu", "org": "Workbench Lab"}, max_new_tokens=args.max_new_tokens,
                  batch_size=args.batch_size, backend="transformers",
                  backend_options={"device": args.device, "dtype": args.dtype, "batch_size": args.batch_size},
                  use_cache=False)
    from workbench.evals.evaluate import resolve_targets

    base = resolve_targets(req).base  # what the sweep loads (the naive part loads it again)
    n_targets = 1 + len(chosen)

    class _OutOfTime(Exception):
        pass

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    progress_rows: list = []

    def progress(done: int, total: int, label: str) -> None:
        # one row per finished target (written at once: a stage killed by its timeout still leaves these)
        if done and done % n_items == 0 and (not progress_rows or progress_rows[-1]["done"] != done):
            at = time.perf_counter() - t0
            took = at - (progress_rows[-1]["at_s"] if progress_rows else 0.0)
            progress_rows.append({"target": label, "done": done, "total": total, "at_s": round(at, 2),
                                  "target_s": round(took, 2)})
            result["sweep_progress"] = progress_rows
            save()
            print(f"  eval: {label} done ({done}/{total} replies) at {at:.1f} s ({took:.1f} s for it)", flush=True)
            if args.budget_s is not None and done < total:
                left = args.budget_s - (time.monotonic() - t_start) - args.naive_reserve_s
                if took > left:  # the next target would eat the naive part's time: stop here
                    raise _OutOfTime(f"stopped after {label}: the next target needs about {took:.0f} s, "
                                     f"{max(left, 0):.0f} s left before the naive part's {args.naive_reserve_s:.0f} s")

    cut = None
    try:
        report = sweep_report(req, progress=progress, log=lambda m: print(f"  eval: {m}", flush=True))
    except _OutOfTime as exc:
        report, cut = None, str(exc)
        print(f"  eval: {cut}", flush=True)
    sweep_s = time.perf_counter() - t0
    per_target = []
    tokens = 0
    for g in captured:
        t = sum((r.tokens or 0) for r in g.replies.values())
        tokens += t
        per_target.append({"target": g.target.name, "generated": g.generated, "tokens": t,
                           "seconds": round(g.seconds, 3), "switch_seconds": round(g.switch_seconds, 4),
                           "tok_per_s": round(t / g.seconds, 1) if g.seconds else None})
    ckpt_targets = [p for p in per_target if p["target"] != "base"]
    peak = round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None
    if cut is None:
        result["sweep"] = {
            "wall_s": round(sweep_s, 2), "targets": len(per_target), "checkpoint_targets": len(ckpt_targets),
            "items": n_items, "tokens": tokens, "tok_per_s": round(tokens / sweep_s, 1) if sweep_s else None,
            "expected_tokens": len(per_target) * n_items * args.max_new_tokens, "per_target": per_target,
            "meta_backend": report.meta.get("backend"), "peak_gpu_memory_mib": peak, "measured_whole": True,
        }
        print(f"sweep: {len(per_target)} targets (base + {len(ckpt_targets)} checkpoints) x {n_items} prompts x "
              f"{args.max_new_tokens} tokens: {sweep_s:.1f} s wall, {tokens} tokens, {tokens / sweep_s:.0f} tok/s",
              flush=True)
    else:
        # a partial sweep: the targets that ran are measured; the rest take the mean of the checkpoint targets
        ran = len(progress_rows)
        ckpt_rows = [r["target_s"] for r in progress_rows if r["target"] != "base"]
        basis = "mean of the checkpoint targets that ran"
        if not ckpt_rows:  # only the base ran: its time (the model's load included) stands for each checkpoint
            ckpt_rows, basis = [r["target_s"] for r in progress_rows], "the base target's time, its load included"
        measured = progress_rows[-1]["at_s"] if progress_rows else sweep_s
        each = statistics.mean(ckpt_rows) if ckpt_rows else None
        whole = measured + (n_targets - ran) * each if each is not None else None
        result["sweep"] = {
            "wall_s": round(whole, 2) if whole is not None else None, "measured_whole": False, "cut": cut,
            "measured_s": round(measured, 2), "targets_measured": ran, "targets": n_targets,
            "checkpoint_targets": len(chosen), "items": n_items, "per_target_s": progress_rows,
            "extrapolation": f"{measured:.1f} s for {ran} targets + {n_targets - ran} x {each:.1f} s ({basis})"
                             if each is not None else None,
            "peak_gpu_memory_mib": peak,
        }
        sweep_s = whole
        print(f"sweep, PARTIAL: {ran} of {n_targets} targets x {n_items} prompts x {args.max_new_tokens} tokens "
              f"measured in {measured:.1f} s; all {n_targets} extrapolated: {result['sweep']['extrapolation']} = "
              f"{whole:.1f} s" if whole is not None else "sweep: no target finished", flush=True)
        if whole is None:
            save()
            return 1
    save()

    # -- the naive loop, one checkpoint measured --------------------------------------------------------------
    naive_ckpt = next((c for c in chosen if c.iteration == args.naive_iter), chosen[-1])
    convert_s, convert_src, adapter = None, None, None
    if args.measure_convert and run_id:
        from workbench.runs.convert import convert_run

        t1 = time.perf_counter()
        conv = convert_run(run_id, iteration=naive_ckpt.iteration, out=str(tmp / "naive_adapter"), force=True)
        convert_s, convert_src, adapter = time.perf_counter() - t1, "measured here", conv[0].adapter_path
    elif args.reader_convert:
        from workbench.models import adapters as _adapters

        t1 = time.perf_counter()
        src = _adapters.read_adapter(f"iter_{naive_ckpt.iteration}", naive_ckpt.path)
        if not src.config.target_modules:  # what XTuner writes: the linear layers it wrapped, named by the weights
            src.config.target_modules = sorted({k.split(".lora_")[0].rsplit(".", 1)[-1] for k in src.state_dict})
        adapter = str(_adapters.export_peft(src, tmp / "naive_adapter"))
        convert_s = time.perf_counter() - t1
        convert_src = ("measured here: workbench's reader, iter_N.pth -> PEFT folder (no xtuner here; XTuner's "
                       "pth_to_hf also loads the base model, so this is a lower bound)")
    elif args.train_json and args.train_json.is_file():
        conv = json.loads(args.train_json.read_text(encoding="utf-8")).get("convert") or {}
        if conv.get("seconds") and conv.get("adapter"):
            convert_s, adapter = conv["seconds"], conv["adapter"]
            naive_ckpt = next((c for c in ckpts if c.iteration == conv.get("iter")), naive_ckpt)
            convert_src = f"measured by gpu_train.py for iter_{conv.get('iter')} of this run ({args.train_json.name})"
    if adapter is None:
        from workbench.runs.checkpoints import adapter_dir

        found = adapter_dir(work_dir, naive_ckpt.iteration)
        adapter = str(found) if (found / "adapter_config.json").is_file() else None
    if adapter is None or convert_s is None:
        result["naive"] = {"error": "no converted adapter or conversion time (give --reader-convert, "
                                    "--measure-convert with --run, or --train-json)"}
        save()
        print(result["naive"]["error"])
        return 1

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    sync()
    t1 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(base)
    import transformers

    key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    model = AutoModelForCausalLM.from_pretrained(base, **{key: dtype}).to(device)
    model = PeftModel.from_pretrained(model, adapter).eval()
    sync()
    reload_s = time.perf_counter() - t1
    prompts = [json.loads(line)["prompt"] for line in evalset.read_text(encoding="utf-8").splitlines()]
    times, ntoks = [], []
    skipped = None
    for p in prompts[: args.naive_prompts]:
        if times and args.budget_s is not None and \
                time.monotonic() - t_start + max(times) + 3 > args.budget_s:  # another prompt would not fit
            skipped = f"{args.naive_prompts - len(times)} of {args.naive_prompts} prompts skipped: --budget-s"
            print(f"naive: {skipped}", flush=True)
            break
        text = f"<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n"  # internlm2_chat, as trained
        enc = tok(text, return_tensors="pt", add_special_tokens=True, return_token_type_ids=False).to(device)
        sync()
        t2 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id)
        sync()
        times.append(time.perf_counter() - t2)
        ntoks.append(int(out.shape[1] - enc["input_ids"].shape[1]))
    per_prompt = statistics.mean(times)
    n_ckpt = len(chosen)
    per_ckpt = convert_s + reload_s + n_items * per_prompt
    naive_total = n_ckpt * per_ckpt
    result["naive"] = {
        "checkpoint": naive_ckpt.iteration, "adapter": adapter,
        "measured": {"convert_s": round(convert_s, 2), "convert_source": convert_src, "reload_s": round(reload_s, 2),
                     "prompts": len(times), "prompt_s": [round(t, 3) for t in times], "tokens": ntoks,
                     "tok_per_s": round(sum(ntoks) / sum(times), 1), "skipped": skipped},
        "extrapolated": {"per_checkpoint_s": round(per_ckpt, 1), "checkpoints": n_ckpt, "prompts": n_items,
                         "total_s": round(naive_total, 1),
                         "formula": "checkpoints x (convert + reload + prompts x mean prompt seconds)"},
    }
    result["speedup_naive_over_sweep"] = round(naive_total / sweep_s, 1)
    if n_ckpt != args.checkpoints:
        result["speedup_note"] = f"{n_ckpt} checkpoints on both sides (not {args.checkpoints})"
    save()
    print(f"naive, measured on iter_{naive_ckpt.iteration}: convert {convert_s:.1f} s ({convert_src}), reload "
          f"{reload_s:.2f} s, {len(times)} prompts at {per_prompt:.2f} s each ({statistics.mean(ntoks):.0f} tokens)",
          flush=True)
    how = "measured" if result["sweep"]["measured_whole"] else "PARTLY EXTRAPOLATED (see above)"
    print(f"naive, extrapolated: {n_ckpt} x ({convert_s:.1f} + {reload_s:.2f} + {n_items} x {per_prompt:.2f}) = "
          f"{naive_total:.0f} s; sweep {sweep_s:.1f} s {how}: {naive_total / sweep_s:.0f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
