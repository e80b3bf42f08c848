"""The `--ray` branch of the CLI: run `upscale_many` with the command's options, report like the
single-machine CLI.

Exit codes are the CLI's one table (cli/commands.py): no Ray or no cluster is a setup error (2),
some files failed 1, Ctrl-C 130.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

from ..device.quiet import quiet_stderr
from ..distributed.run import RayUnreachableError, upscale_many
from ..errors import UsageError
from ..run.options import UpscaleOptions
from .commands import EXIT_FAILED, errors_exit

PROG = "realesr-portable"


def _say(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def run_ray(items: list[str], output: Path | None, address: str, quiet: bool, options: UpscaleOptions,
            suffix: str | None, jobs: tuple[int, int, int]) -> int:
    """Run the job on Ray with `options` whole; returns the exit code."""
    # Errors raise before any image is written (bad images are rows of the report): setup, exit 2.
    with errors_exit(PROG, setup=True, after="finished files are complete, no partial output was left"):
        try:
            # -q: Ray's C++ core still logs a line per actor to fd 2; our own messages come after.
            with quiet_stderr() if quiet else nullcontext():
                report = upscale_many(items, output, options=options, suffix=suffix, jobs=jobs, address=address,
                                      progress=not quiet, skip_existing=True)
        except RayUnreachableError:
            raise  # its line says it all
        except ConnectionError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"cannot reach the Ray cluster at {address!r} ({reason})") from None
    if not quiet:
        for note in report.notices:
            _say(f"note: {note}")
        _say(f"ray: {report.line()}")
    if report.failed:
        _say(f"{len(report.failed)} of {report.total} file(s) failed:")
        for line in report.failure_lines():
            print(f"  {line}", file=sys.stderr)
        return EXIT_FAILED
    return 0
