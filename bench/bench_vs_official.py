"""Whole process against Real-ESRGAN's official script: realesr-animevideov3 x4 on a 512x512 photo, CPU.

Run: `python bench/bench_vs_official.py [RUNS] [--tile N ...]` (prints the table; RUNS defaults
to 5, about 1-2 minutes on 2 busy cores; each `--tile N` adds a row `ours -t N`, the segment
engine at a fixed tile) or `python -m pytest bench/bench_vs_official.py -s`.
Issue 16 item 5: ours at least 1.5x faster than the official script's whole process.

Each run is a fresh child process, timed from its start to its exit with the output on disk:
- ours: `realesr-portable -i in.png -o out.png -n realesr-animevideov3 -s 4 -q` (default device:
  the CPU here; default options, PNG level 1);
- official: `bench/official_child.py`, the official inference script restated (torch fp32 on
  the CPU, cv2 read/write, the same weights imported from the official ncnn files into a
  `.pth` before timing; see that file for what it leaves out).
The two alternate, so machine load hits them alike; the table gives the median wall time, the
median CPU time (user + sys of the child: what load inflates least) and the peak RSS (each
child's own, from `wait4`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

RUNS = 5
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Sample:
    """One child process: wall seconds, CPU seconds (user + sys), peak RSS in MiB."""

    wall_s: float
    cpu_s: float
    rss_mib: float


def photo(path: Path) -> Path:
    """scikit-image's astronaut (a real 512x512 photo) as an 8-bit RGB PNG."""
    import skimage

    with Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png") as im:
        im.convert("RGB").save(path)
    return path


def run_child(cmd: list[str]) -> Sample:
    """Run `cmd` to completion and measure its whole process (no shell in between)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:2]} exited {proc.returncode}: {err.strip()[-500:]}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def _ours_cmd() -> list[str]:
    found = shutil.which("realesr-portable", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "realesr_portable"]


def commands(work: Path, tiles: tuple[int, ...] = ()) -> dict[str, list[str]]:
    """The whole processes, reading the same photo, each writing its own PNG."""
    src = photo(work / "in.png")
    weights = work / "realesr-animevideov3.pth"
    if not weights.is_file():
        from realesr_portable.convert.importer import import_to_pth, official_files

        import_to_pth(*official_files("realesr-animevideov3-x4"), weights)
    ours = [*_ours_cmd(), "-i", str(src), "-n", "realesr-animevideov3", "-s", "4", "-q"]
    return {
        "ours": [*ours, "-o", str(work / "ours.png")],
        "official": [sys.executable, str(HERE / "official_child.py"), str(weights), str(src), str(work / "official.png")],
        **{f"ours -t {t}": [*ours, "-o", str(work / f"ours_t{t}.png"), "-t", str(t)] for t in tiles},
    }


def measure(work: Path, runs: int = RUNS, tiles: tuple[int, ...] = ()) -> dict[str, list[Sample]]:
    """`runs` rounds, each running every command once, the order reversed every other round."""
    cmds = commands(work, tiles)
    samples: dict[str, list[Sample]] = {name: [] for name in cmds}
    for i in range(runs):
        order = list(cmds) if i % 2 == 0 else list(reversed(cmds))
        for name in order:
            samples[name].append(run_child(cmds[name]))
    return samples


def interior_diff(work: Path) -> float:
    """Max difference in levels between the two outputs away from the bottom/right border.

    The official script has no pre-pad by default, the runtime mirrors 10 px there (as
    RealESRGANer's own default), so only the border band may differ.
    """
    with Image.open(work / "ours.png") as a, Image.open(work / "official.png") as b:
        x, y = np.asarray(a.convert("RGB"), dtype=np.int16), np.asarray(b.convert("RGB"), dtype=np.int16)
    assert x.shape == y.shape == (2048, 2048, 3), (x.shape, y.shape)
    return float(np.abs(x - y)[:-160, :-160].max())


def report(samples: dict[str, list[Sample]]) -> str:
    med = {name: Sample(*(statistics.median(getattr(s, f) for s in runs) for f in ("wall_s", "cpu_s", "rss_mib")))
           for name, runs in samples.items()}
    lines = ["| whole process | wall s | CPU s | peak RSS MiB |", "|---|---|---|---|"]
    for name, m in med.items():
        lines.append(f"| {name} | {m.wall_s:.2f} | {m.cpu_s:.2f} | {m.rss_mib:.0f} |")
    ours, off = med["ours"], med["official"]
    lines.append(f"official / ours: wall {off.wall_s / ours.wall_s:.2f}x, CPU {off.cpu_s / ours.cpu_s:.2f}x "
                 f"(median of {len(samples['ours'])}, load {os.getloadavg()[0]:.1f})")
    return "\n".join(lines)


def test_whole_process_vs_official() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        samples = measure(work, runs=int(os.environ.get("REALESR_BENCH_RUNS", RUNS)))
        print("\n" + report(samples))
        # Same model, same weights: the interiors agree (fp32 ncnn vs fp32 torch).
        assert interior_diff(work) <= 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", type=int, default=RUNS)
    parser.add_argument("--tile", type=int, action="append", default=[], help="add a row `ours -t N`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(Path(tmp), runs=args.runs, tiles=tuple(args.tile))
        print(report(result))
        print(f"ours vs official, max interior difference: {interior_diff(Path(tmp)):.0f} levels")
        for t in args.tile:
            with Image.open(Path(tmp) / "ours.png") as a, Image.open(Path(tmp) / f"ours_t{t}.png") as b:
                d = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
            print(f"ours -t {t} vs ours: max {d.max()} level(s), {np.count_nonzero(d)} of {d.size} values differ")


if __name__ == "__main__":
    main()
