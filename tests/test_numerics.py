"""Portable CPU numerics (the same bits on every x86-64 CPU and thread count) and CPU threads shared with training."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from workbench import numerics

# A few training steps of a small Llama, the gradients hashed: what the tiny world's build does, in miniature.
STEPS = """
import hashlib, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
m = LlamaForCausalLM(LlamaConfig(vocab_size=500, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=4))
opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
x = torch.randint(0, 500, (8, 48))
for _ in range(3):
    m(input_ids=x, labels=x).loss.backward(); opt.step(); opt.zero_grad()
h = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in m.parameters())).hexdigest()
print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(), h)
"""


def _steps(threads: int, portable: bool) -> tuple[str, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in numerics.PORTABLE_CPU_ENV}
    if portable:
        env.update(numerics.PORTABLE_CPU_ENV)
    env["OMP_NUM_THREADS"] = str(threads)
    p = subprocess.run([sys.executable, "-c", STEPS], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return tuple(p.stdout.split())


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the pin names x86-64 instruction sets")
def test_under_the_portable_numerics_the_thread_count_does_not_change_a_single_bit():
    one, two = _steps(1, portable=True), _steps(2, portable=True)
    assert one[0] == two[0] == "AVX2" and (one[1], two[1]) == ("1", "2")
    assert one[2] == two[2]


def test_the_suite_itself_runs_under_the_portable_numerics():
    # tests/conftest.py asks for them before torch loads: every test and every child process computes the same bits
    assert numerics.is_portable() and numerics.process_is_portable()
