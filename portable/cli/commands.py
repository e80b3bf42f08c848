"""Run a typer command the way every `realesr-portable` command runs: one-line errors, fixed exit codes.

Why one function: upscaling, `convert`, `train`, `prepare` and `preview` are separate typer apps
(each imports only what it needs, so `--help` stays fast), but a user should see the same
behaviour from all of them: bad usage -> one line, exit 2; bad input (`UserError`), a file
system error or too little memory -> one line, exit 1; Ctrl-C -> exit 130; anything else is a
bug and says "internal error" (still one line); SIGTERM (`timeout`, `docker stop`) is handled like
Ctrl-C: one line, exit 143, and every file goes through a temporary name, so none is half-written.
Imports only typer/click.
"""

from __future__ import annotations

import sys

import typer

from ..errors import UserError, one_line
from .signals import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, sigterm_as_exception

EXIT_FAILED = 1
EXIT_USAGE = 2
#: Exceptions that describe bad input or an environment problem, not a bug.
KNOWN_ERRORS: tuple[type[BaseException], ...] = (UserError, OSError, MemoryError)


def run_command(app: typer.Typer, argv: list[str], prog: str) -> int:
    """Run `app` on `argv` as program `prog`; returns the exit code instead of exiting."""
    command = typer.main.get_command(app)
    try:
        with sigterm_as_exception():
            # make_context + invoke, not command.main: typer's main turns Ctrl-C into a silent 130
            with command.make_context(prog, list(argv)) as ctx:
                code = command.invoke(ctx)
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except typer.Exit as done:
        return int(done.exit_code)
    except typer.Abort:
        print(f"{prog}: aborted", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KNOWN_ERRORS as err:
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as err:  # noqa: BLE001 - the contract is one line, never a traceback
        if getattr(err, "exit_code", None) == EXIT_USAGE and hasattr(err, "format_message"):
            # bad usage (unknown option, missing argument, bad value); typer vendors its own click
            print(f"{prog}: {one_line(Exception(err.format_message()))}", file=sys.stderr)
            return EXIT_USAGE
        print(f"{prog}: internal error: {type(err).__name__}: {one_line(err)}", file=sys.stderr)
        return EXIT_FAILED
    return int(code) if isinstance(code, int) else 0
