"""The `--ray` branch of the CLI: run `upscale_many`, then report like the single-machine CLI.

Exit codes as the CLI's: 0 ok, 1 some files failed, 2 setup error (no Ray, no cluster), 130
interrupted. Setup errors of the job itself (model, options, output) propagate to the CLI, which
prints them as one line.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

from ..device.quiet import quiet_stderr
from ..distributed.run import RayMissingError, upscale_many

PROG = "realesr-portable"


def _say(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def run_ray(items: list[str], output: Path | None, address: str, quiet: bool, **options) -> int:
    """Run the job on Ray; `options` are `upscale_many`'s model and output options."""
    try:
        # -q: Ray's C++ core still logs a line per actor to fd 2; our own messages come after.
        with quiet_stderr() if quiet else nullcontext():
            summary = upscale_many(items, output, address=address, progress=not quiet, skip_existing=True, **options)
    except RayMissingError as exc:
        _say(f"error: {exc}")
        return 2
    except ConnectionError as exc:
        _say(f"error: cannot reach the Ray cluster at {address!r} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
        return 2
    except KeyboardInterrupt:
        _say("error: interrupted; finished files are complete, no partial output was left")
        return 130
    if not quiet:
        for note in summary.notices:
            _say(f"note: {note}")
        _say(f"ray: {summary.line()}")
    if summary.failed:
        total = len(summary.done) + len(summary.skipped) + len(summary.failed)
        _say(f"{len(summary.failed)} of {total} file(s) failed:")
        for src, reason in summary.failed:
            print(f"  {reason if src in reason else f'{src}: {reason}'}", file=sys.stderr)
        return 1
    return 0
