"""Write a PNG grid: GT crops, their degraded LQ (nearest x scale), and the kernels used.

    realesr-portable preview -o grid.png [--seed 0] [--rows 6]
        [--size 256] [--config deg.yml] [IMAGE ...]

Without images it crops scikit-image's sample photos. One row per sample: GT | LQ | first
kernel | second kernel | final sinc, with the drawn parameters written on each kernel tile.
Errors go through the runtime's one table (`cli/commands.py`): one line `PROG: error: ...`; bad
options, a missing image, a bad config, or an output that is a folder, a pipe or one of the
inputs exit 2, a failure while reading, degrading or writing (an unreadable image or one smaller
than the crop, a file system error) exits 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import torch
import typer
from PIL import Image, ImageDraw

from ...atomic import refuse_special, same_file, write_atomic
from ...cli.commands import errors_exit, run_command
from ...errors import UsageError
from ..data import read_image
from .config import RESIZE_MODES, DegradationConfig
from .params import DOWN, UP, StageDraw
from .pipeline import DegradationResult, Degrader

_DEFAULT_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")
_HEADER = 18
MAX_ROWS = 64  # a grid to look at, not a dataset
MAX_SIZE = 1024
SEEDS = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed accepts
_TITLES = ("GT (USM input)", "LQ (nearest up)", "first blur", "second blur", "final sinc")


def _default_images() -> list[Path]:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    return [data / name for name in _DEFAULT_PHOTOS if (data / name).exists()]


def load_crops(paths: list[Path], rows: int, size: int) -> torch.Tensor:
    """`rows` centre-ish crops of size x size from the images (cycled), (rows, 3, size, size)."""
    crops = []
    for i in range(rows):
        path = paths[i % len(paths)]
        a = read_image(path)  # the trainer's reader: a corrupt file or a pixel bomb is one DataError
        if a.shape[0] < size or a.shape[1] < size:
            raise UsageError(f"{path} is {a.shape[1]}x{a.shape[0]}, smaller than the crop size {size}")
        shift = (i // len(paths)) * size // 3
        top = min((a.shape[0] - size) // 2 + shift, a.shape[0] - size)
        left = min((a.shape[1] - size) // 2 + shift, a.shape[1] - size)
        crops.append(a[top : top + size, left : left + size])
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()


def _to_image(x: torch.Tensor) -> Image.Image:
    a = (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(a)


def _kernel_tile(k: torch.Tensor, size: int, active: bool) -> Image.Image:
    if not active:
        return Image.new("RGB", (size, size), (40, 40, 40))
    a = k.abs() / max(float(k.abs().max()), 1e-12)
    gray = Image.fromarray((a.numpy() * 255).round().astype(np.uint8), "L")
    return gray.resize((size, size), Image.NEAREST).convert("RGB")


def _stage_text(d: StageDraw, b: int) -> str:
    direction = int(d.direction[b])
    word = "up" if direction == UP else "down" if direction == DOWN else "keep"
    resize = f"{word} x{float(d.scale[b]):.2f}"
    noise = (f"gauss {float(d.sigma[b]):.1f}" if bool(d.gaussian[b]) else
             f"poisson {float(d.poisson_scale[b]):.2f}") + (" gray" if bool(d.gray[b]) else "")
    jpeg = "" if d.quality is None else f" q{int(d.quality[b])}"
    kind = "sinc" if bool(d.kernel.sinc[b]) else f"k{int(d.kernel.size[b])}"
    return f"{kind} {resize} {RESIZE_MODES[int(d.mode[b])]}\n{noise}{jpeg}"


def render(gt: torch.Tensor, result: DegradationResult, scale: int) -> Image.Image:
    """The grid image for a batch and its DegradationResult."""
    b, _, size, _ = gt.shape
    cols = len(_TITLES)
    canvas = Image.new("RGB", (cols * size, _HEADER + b * size), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(_TITLES):
        draw.text((c * size + 4, 3), title, fill=(0, 0, 0))
    f = result.final
    for i in range(b):
        y = _HEADER + i * size
        lq_size = (result.lq.shape[-1] * scale, result.lq.shape[-2] * scale)
        lq = _to_image(result.lq[i]).resize(lq_size, Image.NEAREST)
        tiles = [
            _to_image(gt[i]),
            lq.crop((0, 0, size, size)),
            _kernel_tile(result.kernels1[i], size, bool(result.first.blur[i])),
            _kernel_tile(result.kernels2[i], size, bool(result.second.blur[i])),
            _kernel_tile(result.sinc_kernels[i], size, bool(f.kernel.sinc[i])),
        ]
        for c, tile in enumerate(tiles):
            canvas.paste(tile, (c * size, y))
        order = "resize+sinc, JPEG" if bool(f.resize_first[i]) else "JPEG, resize+sinc"
        quality = "" if f.quality is None else f" q{int(f.quality[i])}"
        final = f"{order}\n{RESIZE_MODES[int(f.mode[i])]}{quality}"
        for c, text in ((2, _stage_text(result.first, i)), (3, _stage_text(result.second, i)), (4, final)):
            draw.text((c * size + 4, y + 4), text, fill=(255, 80, 80))
    return canvas


def _save_atomic(img: Image.Image, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda fh: img.save(fh, "PNG"))


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command(help="Write a PNG grid of GT crops, their degraded LQ and the kernels used.")
def preview(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write")],
    images: Annotated[Optional[list[Path]], typer.Argument(help="source images (default: scikit-image photos)", show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", min=SEEDS[0], max=SEEDS[1], help="random seed of the degradations")] = 0,
    rows: Annotated[int, typer.Option("--rows", help="number of GT crops (grid rows)")] = 6,
    size: Annotated[int, typer.Option("--size", metavar="PIXELS", help="GT crop side, a multiple of --scale")] = 256,
    scale: Annotated[int, typer.Option("--scale", help="downscale factor GT -> LQ")] = 4,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML overrides on the x4plus recipe")] = None,
) -> None:
    args = argparse.Namespace(images=list(images or []), output=output, seed=seed, rows=rows, size=size,
                              scale=scale, config=config)
    raise typer.Exit(_run(args, ctx.info_name or "realesr-portable preview"))


def main(argv: list[str] | None = None, prog: str = "realesr-portable preview") -> int:
    """Parse `argv` (default: the process arguments) and write the grid; returns the exit code."""
    return run_command(app, list(sys.argv[1:] if argv is None else argv), prog)


def _check_output(output: Path, sources: list[Path]) -> None:
    """Refuse, before the work, an output that is a folder, pipe or device, or one of the sources
    (writing the grid over an input photo or the config would lose it)."""
    refuse_special(output)
    for source in sources:
        if same_file(source, output):
            raise UsageError(f"output {output} is the input {source}; choose another file")
    if output.suffix.lower() != ".png":  # `-o grid.jpg` once got PNG bytes under a JPEG name
        raise UsageError(f"output {output}: the grid is a PNG; name it NAME.png")


def _run(args: argparse.Namespace, prog: str = "realesr-portable preview") -> int:
    with errors_exit(prog, setup=True):  # options, image paths and config: bad usage, exit 2
        if not 1 <= args.rows <= MAX_ROWS or not 16 <= args.size <= MAX_SIZE or args.scale < 1 or args.size % args.scale:
            raise UsageError(f"need --rows 1..{MAX_ROWS} and --size 16..{MAX_SIZE}, a multiple of --scale")
        paths = args.images or _default_images()
        if not paths:
            raise UsageError("no images given and scikit-image's sample photos are not installed")
        for path in paths:
            if not path.is_file():
                raise UsageError(f"no such image: {path}")
        config = DegradationConfig.from_yaml(args.config) if args.config else DegradationConfig.x4plus()
        _check_output(args.output, [*paths, *([args.config] if args.config else [])])
    # from here on an error is a failure of the work: `run_command` gives it one line and exit 1
    gt = load_crops(paths, args.rows, args.size)
    result = Degrader(config, args.scale).run(gt, torch.Generator().manual_seed(args.seed))
    _save_atomic(render(gt, result, args.scale), args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
