"""Run one bench case and report the CPU seconds of its whole process tree (Ray's processes too).

`python bench/treecpu.py cli ARGS...` runs the CLI; `python bench/treecpu.py api SRC OUT ACTORS`
runs `upscale_many`. A thread samples /proc every 50 ms for every descendant (Ray's GCS, raylet
and actor processes are descendants of a local Ray's driver) and keeps each one's latest CPU
time; on an overloaded machine this is a steadier measure of work than wall time. Linux only.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _descendants_cpu(root: int, seen: dict[int, float]) -> None:
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(int(p))) is not None}
    tree = {root}
    changed = True
    while changed:
        changed = False
        for pid, (parent, _) in stats.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                changed = True
    for pid in tree - {root}:
        seen[pid] = max(seen.get(pid, 0.0), stats[pid][1])


def main() -> int:
    mode, args = sys.argv[1], sys.argv[2:]
    seen: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            _descendants_cpu(os.getpid(), seen)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if mode == "api":
        from realesr_portable.distributed import upscale_many

        report = upscale_many(args[0], args[1], model="realesr-animevideov3", outscale=2, gpu=-1, actors=int(args[2]),
                              progress=False)
        code = 1 if report.failed else 0
    else:
        from realesr_portable.cli import main as cli

        code = cli(args)
    stop.set()
    sampler.join()
    own = resource.getrusage(resource.RUSAGE_SELF)
    print("tree_cpu_s", own.ru_utime + own.ru_stime + sum(seen.values()), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
