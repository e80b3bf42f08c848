"""Every `realesr-portable` command's errors become one line and a fixed exit code, here and only here.

Why one place: upscaling, `models`, `convert`, `train`, `prepare` and `preview` are separate typer
apps (each imports only what it needs, so `--help` stays fast), but a user should see the same
behaviour from all of them. The table (`exit_code`):

- bad usage (unknown option, missing argument, bad value), or any error while a command checks its
  options, model, device and outputs before any work starts (`setup=True`) -> one line, exit 2;
- bad input (`UserError`), a file system error or too little memory during the work -> one line,
  exit 1 (also where an error carries its own `exit_code`, like the torch backend missing: 1);
- Ctrl-C -> exit 130; SIGTERM (`timeout`, `docker stop`) -> exit 143, handled like Ctrl-C, and
  every file goes through a temporary name, so none is half-written;
- anything else is a bug and says "internal error" (still one line, exit 1).

`run_command` runs a whole app under this table; a command that wants the setup rule or a note
after an interruption wraps that part in `errors_exit(...)`. Imports only typer/click.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

from ..errors import UserError, one_line, printable
from .signals import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, sigterm_as_exception

EXIT_FAILED = 1
EXIT_USAGE = 2
#: Exceptions that describe bad input or an environment problem, not a bug.
KNOWN_ERRORS: tuple[type[BaseException], ...] = (UserError, OSError, MemoryError)


def _describe(err: BaseException) -> str:
    """One line; an OSError as `path: reason` rather than `[Errno 2] ...: 'path'`."""
    if isinstance(err, OSError) and err.strerror and err.filename:
        return f"{printable(str(err.filename))}: {err.strerror}"
    return one_line(err)


def exit_code(err: BaseException, prog: str, *, setup: bool = False, after: str | Callable[[], str] = "") -> int:
    """Print the one line `err` deserves on stderr and return its exit code (the table above).

    `setup`: the error came before any work started, so it is bad usage: exit 2. `after`: what an
    interrupted user should know (appended to the interruption's line), or a function that says
    it at that moment (whether a checkpoint exists yet, say).
    """
    said = (after() if callable(after) else after) if isinstance(err, (Terminated, KeyboardInterrupt)) else ""
    tail = f"; {said}" if said else ""
    if isinstance(err, Terminated):
        line, code = f"error: terminated{tail}", EXIT_TERMINATED
    elif isinstance(err, KeyboardInterrupt):
        line, code = f"error: interrupted{tail}", EXIT_INTERRUPTED
    elif isinstance(err, typer.Abort):
        line, code = "aborted", EXIT_FAILED
    elif getattr(err, "exit_code", None) == EXIT_USAGE and hasattr(err, "format_message"):
        # click's usage errors; typer vendors its own click, so they are recognised by shape
        line, code = one_line(Exception(err.format_message())), EXIT_USAGE
    elif isinstance(err, KNOWN_ERRORS) or (setup and isinstance(err, ValueError)):
        own = getattr(err, "exit_code", None)
        line, code = f"error: {_describe(err)}", own if isinstance(own, int) else (EXIT_USAGE if setup else EXIT_FAILED)
    else:
        line, code = f"internal error: {type(err).__name__}: {one_line(err)}", EXIT_FAILED
    print(f"{prog}: {line}", file=sys.stderr, flush=True)
    return code


@contextmanager
def errors_exit(prog: str, *, setup: bool = False, after: str | Callable[[], str] = "") -> Iterator[None]:
    """Inside a typer command: an error in the block ends the command by `exit_code`'s table
    (as `typer.Exit`, so the app behaves the same whether `run_command` or a test runner runs it)."""
    try:
        yield
    except typer.Exit:
        raise
    except BaseException as err:  # noqa: BLE001 - the contract is one line, never a traceback
        if isinstance(err, (SystemExit, GeneratorExit)):
            raise
        raise typer.Exit(exit_code(err, prog, setup=setup, after=after)) from None


def run_command(app: typer.Typer, argv: list[str], prog: str) -> int:
    """Run `app` on `argv` as program `prog`; returns the exit code instead of exiting."""
    command = typer.main.get_command(app)
    try:
        with sigterm_as_exception():
            # make_context + invoke, not command.main: typer's main turns Ctrl-C into a silent 130
            with command.make_context(prog, list(argv)) as ctx:
                code = command.invoke(ctx)
    except typer.Exit as done:
        return int(done.exit_code)
    except BaseException as err:  # noqa: BLE001 - every error goes through the one table
        if isinstance(err, (SystemExit, GeneratorExit)):
            raise
        return exit_code(err, prog)
    return int(code) if isinstance(code, int) else 0
