"""`realesr-portable convert SRC -o OUTDIR`: weights (or an official ncnn pair) -> portable model.

Every failure is one line on stderr and a non-zero exit code, never a traceback: a user feeding
it a truncated download, someone else's pickle or an unknown architecture needs to know which,
not where in our code it was noticed. Exit codes: 2 bad usage, 1 failed conversion.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..cli.commands import run_command

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help=__doc__.splitlines()[0])


class Route(str, Enum):
    auto = "auto"
    direct = "direct"
    pnnx = "pnnx"


@app.command()
def convert(
    src: Annotated[Path, typer.Argument(help="weights .pth/.safetensors, or an ncnn .param (its .bin beside it)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for NAME.param/.bin/.json (and NAME.pth)")],
    name: Annotated[Optional[str], typer.Option(help="model name (default: SRC's file stem)")] = None,
    fp32: Annotated[bool, typer.Option("--fp32", help="store fp32 weights (default fp16, half the size)")] = False,
    dn: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="denoise strength: dn*SRC + (1-dn)*DN_WEIGHTS")] = None,
    dn_weights: Annotated[Optional[Path], typer.Option("--dn-weights", help="second weight set for --dn (same architecture)")] = None,
    route: Annotated[Route, typer.Option(help="direct writer (known architectures), pnnx, or auto")] = Route.auto,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="compare ncnn with torch on a probe image")] = True,
    license: Annotated[Optional[str], typer.Option(help="licence of the weights for the sidecar (SPDX id)")] = None,
    tile_pad: Annotated[Optional[int], typer.Option("--tile-pad", min=0, metavar="PIXELS", help="declare this padding (input pixels per tile side) instead of measuring it")] = None,
) -> None:
    """Convert weights to NAME.param + NAME.bin + NAME.json, verified against PyTorch."""
    from ..cli.progress import make_progress
    from .api import STEPS, convert_file

    bar = make_progress()
    if bar is None:
        result = convert_file(src, output, name=name, fp16=not fp32, verify=verify, dn=dn, dn_src=dn_weights,
                              route=route.value, license=license, tile_pad=tile_pad)
    else:
        with bar:
            task = bar.add_task("convert", total=len(STEPS))

            def step(what: str) -> None:
                bar.update(task, completed=STEPS.index(what), description=f"convert: {what}", refresh=True)

            result = convert_file(src, output, name=name, fp16=not fp32, verify=verify, dn=dn, dn_src=dn_weights,
                                  route=route.value, license=license, tile_pad=tile_pad, step=step)
            bar.update(task, completed=len(STEPS), description="convert", refresh=True)
    spec = result.spec
    typer.echo(f"wrote {result.param}, {result.bin.name}, {result.json.name}: {spec.arch} x{spec.scale}, "
               f"{'fp16' if spec.fp16_weights else 'fp32'} weights, tile_pad {spec.tile_pad}, route {result.route}")
    if result.max_abs is not None and result.psnr is not None:
        typer.echo(f"verified ncnn vs torch: max abs {result.max_abs:.3g}, PSNR {result.psnr:.2f} dB ({result.bound})")
    else:
        typer.echo("not verified (--no-verify)")
    if result.pth is not None:
        parity = "" if result.import_max_abs is None else f" (torch vs source ncnn: max abs {result.import_max_abs:.3g})"
        typer.echo(f"imported weights: {result.pth}{parity}")
    for note in result.notes:
        typer.echo(f"note: {note}")


def main(argv: list[str] | None = None) -> int:
    """Run the convert command on `argv` (with or without a leading `convert`); returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["convert"]:
        args = args[1:]
    return run_command(app, args, "realesr-portable convert")


if __name__ == "__main__":
    raise SystemExit(main())
