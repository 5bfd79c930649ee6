"""One pipeline command, run twice in one new process: what its first run costs beyond the second.

    python -m benchmarks.first_run pipelines.lipsync FACE SPEECH --out OUT.mp4

The first run is what a user of the command line gets every time, and the app on its first click: the
interpreter, the imports, the model's loading and every first call (graphs built, kernels compiled). The
second run, in the same process, is what the benchmarks' in-process timings measure. The last line printed is
one JSON object: ``first_run_end`` (``time.time()`` when the first run returned, for the caller that started
the process to subtract its own start time from), ``second_run_s`` and both exit statuses.
``benchmarks.performance`` (part ``startup``) runs it for every command.
"""
from __future__ import annotations

import importlib
import json
import sys
import time


def main(argv=None) -> int:
    module, *args = sys.argv[1:] if argv is None else argv
    run = importlib.import_module(module).main
    status = [run(args)]
    first_end = time.time()
    t = time.perf_counter()
    status.append(run(args))
    second = time.perf_counter() - t
    print(json.dumps({"first_run_end": first_end, "second_run_s": second, "exit_status": status}), flush=True)
    return max(status)


if __name__ == "__main__":
    sys.exit(main())
