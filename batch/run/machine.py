"""Where a run happens, in a few words, so measured throughput can be compared."""

from __future__ import annotations

import os
import platform


def hardware() -> str:
    """A short description of where a run happened, for comparing throughput."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:  # no /proc (macOS, BSD): the platform's own name stands
        pass
    return f"{cpu} x{os.cpu_count()}"
