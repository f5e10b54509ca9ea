"""XTuner checkpoints read on a box without mmengine or xtuner (an eval-only or lmdeploy-only environment)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from workbench.xtuner.checkpoint import load_state_dict

GUARD = textwrap.dedent("""
    import builtins, sys
    real = builtins.__import__
    def guarded(name, *a, **k):
        if name.split(".")[0] in ("mmengine", "xtuner"):
            raise ImportError("not installed here: " + name)
        return real(name, *a, **k)
    builtins.__import__ = guarded
    import torch
    from workbench.xtuner.checkpoint import load_state_dict
    sd = load_state_dict(sys.argv[1])
    torch.save({k: v.clone() for k, v in sd.items()}, sys.argv[2])
    assert not any(m.startswith(("mmengine", "xtuner")) for m in sys.modules)
""")


def test_a_pth_checkpoint_loads_the_same_weights_without_mmengine_installed(tiny_run_dir, tmp_path):
    ckpt = tiny_run_dir / "iter_60.pth"
    out = tmp_path / "weights.pt"
    p = subprocess.run([sys.executable, "-c", GUARD, str(ckpt), str(out)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    without = torch.load(out, weights_only=True)
    with_mmengine = load_state_dict(ckpt)
    assert without.keys() == with_mmengine.keys() and len(without) > 0
    assert all(torch.equal(without[k], with_mmengine[k]) for k in without)
