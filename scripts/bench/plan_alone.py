"""``compute_plan`` alone, in a fresh process: time and peak RSS (VmHWM) of planning one run.

    python scripts/bench/plan_alone.py DESIRED.json OBSERVED.json [CONFIG_JSON]

DESIRED.json is a ``DesiredState`` dump, OBSERVED.json an ``ObservedState`` dump (the bench takes both from
the no-change run's XComs, or from a kintone read and the naive full scan). Prints one JSON line.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def vm(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    from idc_sync.config import SyncConfig
    from idc_sync.model import DesiredState, ObservedState
    from idc_sync.plan import compute_plan

    config = SyncConfig.from_json(sys.argv[3] if len(sys.argv) > 3 else None)
    with open(sys.argv[1], encoding="utf-8") as f:
        desired = DesiredState.model_validate(json.load(f))
    with open(sys.argv[2], encoding="utf-8") as f:
        observed = ObservedState.model_validate(json.load(f))
    before = vm("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pass
    started = time.perf_counter()
    plan, problems = compute_plan(desired, observed, config)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": round(seconds, 3),
                "peak_rss_bytes": vm("VmHWM"),
                "rss_before_bytes": before,
                "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "operations": len(plan.operations) if hasattr(plan, "operations") else None,
                "problems": len(problems),
                "desired_assignments": len(desired.assignments),
                "observed_assignments": len(observed.assignments),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
