"""`lmdeploy serve api_server` with the PyTorch engine inside the server's own process.

Run by lmdeploy's Python, not workbench's (it imports only lmdeploy and the standard library):

    LMDEPLOY_PYTHON bench/lmdeploy_inproc_launch.py serve api_server MODEL --backend pytorch ...   (lmdeploy's flags)

lmdeploy 0.18's api_server always moves the PyTorch engine into a child process (``enable_mp_engine``, set in
``lmdeploy.serve.openai.api_server.serve``), and every step's tokens then cross a ZeroMQ socket before the server can
stream them. `lmdeploy.pipeline` keeps the engine in its process. Measured on an H200 (docs/benchmarks.md, "lmdeploy:
the engine against the backend"), that hop is what held a chat reply (one request) to about half of the engine's speed.
This launcher keeps the engine in the server's process and changes nothing else: the same command line, API and
engine settings.
"""

from __future__ import annotations

import os
import runpy
import sys


def keep_engine_in_process() -> None:
    from lmdeploy.messages import PytorchEngineConfig

    set_attr = PytorchEngineConfig.__setattr__

    def __setattr__(self, name, value):  # noqa: N807 (the dataclass's own hook)
        set_attr(self, name, False if name == "enable_mp_engine" else value)

    PytorchEngineConfig.__setattr__ = __setattr__  # type: ignore[method-assign]


def main() -> None:
    # run as a script, this file's folder is sys.path[0]: keep lmdeploy's own package the one imported
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    keep_engine_in_process()
    sys.argv = ["lmdeploy", *sys.argv[1:]]
    runpy.run_module("lmdeploy", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
