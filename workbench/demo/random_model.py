"""Random-weight models of real shapes (e.g. InternLM2-1.8B's), with the tiny world's tokenizer.

For speed and memory measurements on a GPU, where what matters is the shape, not what the model knows.
The architecture is Llama (InternLM2 is Llama-shaped: RMSNorm, RoPE, SwiGLU, GQA), so it loads with plain
transformers, peft, xtuner and lmdeploy without remote code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from workbench import atomic
from workbench.errors import BadInput

SHAPES: dict[str, dict] = {
    # internlm/internlm2-chat-1_8b config.json
    "internlm2-1_8b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=16,
                           num_key_value_heads=8, vocab_size=92544, max_position_embeddings=32768,
                           rope_theta=1_000_000.0, tie_word_embeddings=False),
    "internlm2-7b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=92544, max_position_embeddings=32768,
                         rope_theta=1_000_000.0, tie_word_embeddings=False),
    "tiny": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=2000, max_position_embeddings=512, tie_word_embeddings=True),
}


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def make_random_model(shape: str, out: str | Path, *, dtype: str = "bfloat16", seed: int = 0, device: str = "cpu",
                      tokenizer: str | Path | None = None) -> Path:
    """Write a random-weight LlamaForCausalLM of `shape` with the tiny world's tokenizer to `out` (atomically).

    `device`: where the weights are initialised ("cuda": a 1.8B model in seconds instead of most of a minute on the
    CPU; the CPU and a GPU draw different random numbers). `tokenizer`: a folder holding the tiny
    world's tokenizer files (default: the tiny world itself, built first if needed)."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    if shape not in SHAPES:
        raise BadInput(f"--random-model: unknown shape {shape!r} (known: {', '.join(SHAPES)})")
    if tokenizer is None:
        from workbench.demo.world import ensure_world

        tok_dir = Path(ensure_world().path)
    else:
        tok_dir = Path(tokenizer).expanduser()
        if not (tok_dir / "tokenizer_config.json").is_file():
            raise BadInput(f"{tok_dir}: no tokenizer files (tokenizer_config.json) in this folder")
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    dims = dict(SHAPES[shape])
    dims["vocab_size"] = max(dims["vocab_size"], len(tok))  # the model may have more rows than the tokenizer uses
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    config = LlamaConfig(**dims, bos_token_id=tok.bos_token_id, eos_token_id=im_end, pad_token_id=tok.pad_token_id,
                         torch_dtype=dtype)
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=im_end,
                                               pad_token_id=tok.pad_token_id)
    with atomic.folder(out, replace=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True, max_shard_size="2GB")
        # the tiny world's own tokenizer files, copied rather than re-saved: transformers 5 would save them as
        # "TokenizersBackend", a class the training stack's transformers 4.48 cannot load
        for name in TOKENIZER_FILES:
            if (tok_dir / name).is_file():
                shutil.copy(tok_dir / name, Path(tmp) / name)
        (Path(tmp) / "workbench-random.json").write_text(
            json.dumps({"shape": shape, "dtype": dtype, "seed": seed, "device": device, "random_weights": True},
                       indent=2)
        )
    return Path(out)
