"""Child process of `workbench convert`: ``python -m workbench.runs.convert_worker CONFIG PTH OUT [PTH OUT]...``.

Runs XTuner's ``pth_to_hf`` (through `workbench.xtuner_compat`, for its CPU fix) once per checkpoint in this
one process, each into a temporary folder renamed to OUT only when the tool succeeded.
"""

from __future__ import annotations

import sys

from workbench import atomic

DONE_MARK = "@@workbench-done"


def main(argv: list[str]) -> int:
    if len(argv) < 3 or len(argv) % 2 != 1:
        print("usage: python -m workbench.runs.convert_worker CONFIG PTH OUT [PTH OUT]...", file=sys.stderr)
        return 2
    from workbench.xtuner_compat import run_tool

    config, pairs = argv[0], argv[1:]
    for pth, out in zip(pairs[::2], pairs[1::2], strict=True):
        with atomic.folder(out, replace=True) as tmp:
            code = run_tool("pth_to_hf", [config, pth, str(tmp), "--safe-serialization", "--fp32"])
            if code != 0:
                raise SystemExit(code)  # leaves the block by an exception: the partial folder is discarded
        print(f"{DONE_MARK} {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
