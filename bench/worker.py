"""One measurement in a fresh process: ``python -m bench.worker MODULE:FUNCTION PARAMS_JSON RESULT_PATH``.

The function gets ``(params, workdir)`` and returns a dict with at least ``seconds`` (the timed work,
after imports and input preparation). With ``params["memory_limit_gb"]`` the process's address space is
capped first (``RLIMIT_AS``), so an implementation that needs more fails with MemoryError instead of
swapping the machine; the failure is recorded as ``failed: out of memory at N GB``.
"""

from __future__ import annotations

import importlib
import json
import resource
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path


def main() -> int:
    target, params_json, result_path = sys.argv[1:4]
    params = json.loads(params_json)
    limit_gb = params.get("memory_limit_gb")
    if limit_gb:
        limit = int(float(limit_gb) * 1024**3)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    started = time.perf_counter()
    module_name, func_name = target.split(":")
    work = Path(tempfile.mkdtemp(prefix="bench-work-", dir=params.get("work_root")))
    out: dict
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        out = dict(func(params, work))
        out["ok"] = True
    except MemoryError:
        out = {"ok": False, "error": f"failed: out of memory at {limit_gb} GB" if limit_gb else "failed: MemoryError"}
    except Exception as exc:  # noqa: BLE001 - recorded as the measurement's failure
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        oom = limit_gb and ("memory" in text.lower() or "bad_alloc" in text.lower() or "allocat" in text.lower())
        out = {
            "ok": False,
            "error": f"failed: out of memory at {limit_gb} GB ({type(exc).__name__})" if oom
            else f"failed: {type(exc).__name__}: {text[:300]}",
            "traceback": traceback.format_exc()[-2000:],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["process_seconds_in_worker"] = time.perf_counter() - started
    out["peak_rss_mb_self"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(result_path).write_text(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
