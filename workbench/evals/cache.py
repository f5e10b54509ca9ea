"""The response cache: what a model said to a prompt, so that a repeated or interrupted sweep regenerates
nothing it already has.

One file a (model, adapter content hash, template, generation settings, backend numerics) key, under
``cache_dir()/eval/<key>.jsonl``, one line a prompt. Files are rewritten atomically after every batch,
so a crash leaves the previous complete version. Adapters are keyed by the hash of their bytes (a
re-trained ``iter_60.pth`` at the same path is a different adapter); base models by a cheap fingerprint
(config, file names and sizes, and the first and last MiB of each weight file), because hashing gigabytes
of weights on every eval would cost more than the eval.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path

from workbench import atomic
from workbench.paths import cache_dir

_CHUNK = 1 << 20
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".model", ".json", ".txt", ".gguf")


def _eval_dir() -> Path:
    d = cache_dir() / "eval"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def _hash_memo() -> tuple[Path, dict]:
    memo_path = _eval_dir() / "hashes.json"
    try:
        return memo_path, json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return memo_path, {}


def content_hash(path: str | os.PathLike) -> str:
    """sha256 (16 hex digits) of every byte of a file or folder (an ``iter_N.pth``, a PEFT folder).

    Remembered by (path, size, mtime) in ``cache_dir()/eval/hashes.json``, so a repeated sweep does not
    re-read hundreds of MB of checkpoints.
    """
    path = Path(path).resolve()
    files = _files(path)
    stamp = [[str(f.relative_to(path.parent)), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    memo_key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()
    memo_path, memo = _hash_memo()
    if memo_key in memo:
        return memo[memo_key]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path)).encode() if path.is_dir() else b"")
        with f.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    digest = h.hexdigest()[:16]
    memo[memo_key] = digest
    atomic.write_json(memo_path, memo, indent=None)
    return digest


def model_fingerprint(path: str | os.PathLike) -> str:
    """A cheap identity of a model folder (config and tokenizer bytes, weight names, sizes, first and
    last MiB): changes when the model changes, without reading gigabytes. A hub id is used as is."""
    path = Path(path)
    if not path.exists():
        return f"id:{path}"
    h = hashlib.sha256()
    for f in _files(path):
        if not f.name.endswith(_WEIGHT_SUFFIXES):
            continue
        size = f.stat().st_size
        h.update(f"{f.relative_to(path)}:{size}".encode())
        with f.open("rb") as fh:
            h.update(fh.read(_CHUNK))
            if size > 2 * _CHUNK:
                fh.seek(size - _CHUNK)
                h.update(fh.read(_CHUNK))
    return h.hexdigest()[:16]


def resolved_numerics(backend: str | None, options: dict | None) -> dict:
    """The settings that change what greedy decoding produces, as they will actually run: "auto" or None
    device and dtype are resolved the way the in-process backend resolves them (CUDA if present, else the
    CPU; bf16/fp16 on a GPU, fp32 on the CPU). Front ends pass None (the TUI, the demo) or "auto" (`workbench
    eval`) for the same run; resolving before the key is made lets every front end share one cache."""
    options = options or {}
    backend = backend or "transformers"
    device, dtype = options.get("device") or "auto", options.get("dtype") or "auto"
    if backend == "transformers":
        from workbench.models.loading import pick_device_dtype

        device, torch_dtype = pick_device_dtype(device, dtype)
        dtype = str(torch_dtype).removeprefix("torch.")
        device = "cuda" if device.startswith("cuda") else device  # which GPU of a host does not change the text
    return {"backend": backend, "device": device, "dtype": dtype,
            "load_in_4bit": bool(options.get("load_in_4bit")), "load_in_8bit": bool(options.get("load_in_8bit"))}


def cache_key(**parts: object) -> str:
    """The file key of one (model, adapter, template, settings, backend) combination."""

    def plain(v):
        return asdict(v) if is_dataclass(v) and not isinstance(v, type) else v

    blob = json.dumps({k: plain(v) for k, v in parts.items()}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class ResponseCache:
    """Responses of one cache key, by prompt. `get` / `put`; `flush` rewrites the file atomically."""

    def __init__(self, key: str, *, enabled: bool = True, meta: dict | None = None):
        self.key = key
        self.enabled = enabled
        self.meta = meta or {}
        self.path = _eval_dir() / f"{key}.jsonl" if enabled else None
        self.rows: dict[str, dict] = {}
        self._dirty = False
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a damaged line costs one regeneration, never the whole file
                if isinstance(row, dict) and "prompt" in row and "response" in row:
                    self.rows[row["prompt"]] = row

    def get(self, prompt: str) -> dict | None:
        return self.rows.get(prompt)

    def put(self, prompt: str, response: str, **extra: object) -> None:
        self.rows[prompt] = {"prompt": prompt, "response": response, **extra}
        self._dirty = True

    def flush(self) -> None:
        if self.path is None or not self._dirty:
            return
        # The first line says what the key stands for (for a human looking at the cache; never read back).
        head = [{"_meta": self.meta}] if self.meta else []
        atomic.write_jsonl(self.path, head + list(self.rows.values()))
        self._dirty = False
