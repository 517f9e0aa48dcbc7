"""Run ``run.py analyze`` on several argument lists in one process whose address space is capped
at its size after the imports plus ``LIMIT_MIB`` (argv[1]); print one JSON line per run:
``{"code": exit status, "err": stderr}``. argv[2:] are JSON argument lists."""

import contextlib
import io
import json
import resource
import sys

import matplotlib.pyplot  # noqa: F401  (the libraries first: the limit is for the analysis)
import sklearn.cluster  # noqa: F401

from neural_echos.tools.analyze import main

with open("/proc/self/status") as status:
    vm = next(int(line.split()[1]) for line in status if line.startswith("VmSize")) * 1024
limit = vm + int(sys.argv[1]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
for argv in sys.argv[2:]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(json.loads(argv))
        except SystemExit as exit_:
            code = exit_.code
        except MemoryError:
            code = "MemoryError"
    print(json.dumps({"code": code, "err": err.getvalue()}), flush=True)
