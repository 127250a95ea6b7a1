"""The parse sandbox: untrusted files are parsed in separate processes, each file within a time
limit, a memory limit and zip-bomb limits, its chunks streamed back in batches the worker asks
for (`pool.py` in the worker, `child.py` in the parse process, `zips.py` before any unzip)."""

from llamafarm.ingest.sandbox.child import Job, Stats
from llamafarm.ingest.sandbox.pool import Cancelled, ParseLimits, ParsePool, ParseRun

__all__ = ["Cancelled", "Job", "ParseLimits", "ParsePool", "ParseRun", "Stats"]
