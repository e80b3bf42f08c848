#!/usr/bin/env python
"""Cut large HR images into overlapping sub-images and write a meta file, as DF2K is prepared.

    python trainer/prepare_subimages.py datasets/DF2K_HR datasets/DF2K_sub \
        [--crop-size 480] [--step 240] [--thresh-size 0] [--scales 1,0.75,0.5,0.3333] [--workers 4]

Reading a 2K PNG costs far more than cropping it, so training from 480 px sub-images keeps the
data loader ahead of the GPU. `--scales` also writes downscaled copies first (Real-ESRGAN's
multi-scale DF2K). Windows start every `step` pixels; a last window is added flush with the
border when the leftover is larger than `thresh-size`. The meta file lists the sub-images
relative to the output folder (use it as `data.meta_file`). Unreadable inputs are skipped and
reported. Outputs are written to a temporary name and renamed.

Errors go through the runtime's one table (`cli/commands.py`): one line `PROG: error: ...`; bad
options, a missing input folder, an output folder inside the input folder (a rerun would cut the
crops again) or a meta file over an input image exit 2, a failure during the work (no images
found, a file system error) exits 1, and so does a run in which no image could be read. Entries
that cannot be inputs (a FIFO, socket or device, a broken link) and images whose sub-images
would overwrite another's (`a.png` and `a.jpg`) get one line each and are skipped; the others
are still cut, and the run exits 1 at the end.
"""

from __future__ import annotations

import os
import sys
import multiprocessing
import signal
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

if __name__ == "__main__" and not __package__:  # run as a script: import the package from this checkout
    from train import bootstrap_checkout

    bootstrap_checkout()
    from realesr_portable.trainer.prepare_subimages import main as _main

    sys.exit(_main(prog="prepare_subimages.py"))

from ..atomic import refuse_special, same_file, special_kind, write_bytes_atomic, writer_gone
from ..cli.commands import EXIT_FAILED, errors_exit, run_command
from ..errors import UsageError, UserError
from ..image.io import ImageError, Picture, read_image, save_image
from ..image.scale import resize, target_size

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MAX_WORKERS = 256  # a process each: --workers 100000 would fork until the machine stops
MIN_SCALE = 0.01  # a smaller copy of a 2K photo is a few pixels: nothing to train from


def window_starts(length: int, crop: int, step: int, thresh: int) -> list[int]:
    """Start offsets of the windows along one axis (a single window if the side is <= crop)."""
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop + 1, step))
    if length - (starts[-1] + crop) > thresh:
        starts.append(length - crop)
    return starts


def scale_tag(scale: float) -> str:
    """The name part of a downscaled copy's sub-images ("" at full size, 0.75 -> "_T075")."""
    return "" if scale == 1 else f"_T{scale:g}".replace(".", "")


def cut_one(src: Path, rel: Path, out_dir: Path, crop: int, step: int, thresh: int, scales: tuple[float, ...]) -> tuple[list[str], str]:
    """Cut one image at every scale; returns (relative output paths, error message or '').

    Read with the runtime's reader (EXIF orientation applied, 16-bit kept, alpha dropped), so the
    sub-images are what training would have read from the original.
    """
    try:
        base = read_image(src, max_pixels=0).color
    except ImageError as exc:
        return [], str(exc)
    written: list[str] = []
    for scale in scales:
        img = base if scale == 1 else resize(base, target_size(base.shape[1], base.shape[0], scale))
        tag = scale_tag(scale)
        index = 0
        for top in window_starts(img.shape[0], crop, step, thresh):
            for left in window_starts(img.shape[1], crop, step, thresh):
                index += 1
                sub = np.ascontiguousarray(img[top : top + crop, left : left + crop])
                name = rel.parent / f"{rel.stem}{tag}_s{index:03d}.png"
                (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
                save_image(out_dir / name, Picture(sub), "PNG")
                written.append(name.as_posix())
    return written, ""


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command(help="Cut HR images into overlapping sub-images and write a meta file (as DF2K is prepared).")
def prepare(
    ctx: typer.Context,
    input: Annotated[Path, typer.Argument(help="folder of HR images (searched recursively)")],
    output: Annotated[Path, typer.Argument(help="folder for the sub-images")],
    crop_size: Annotated[int, typer.Option("--crop-size", min=1, metavar="PIXELS", help="side of each sub-image")] = 480,
    step: Annotated[int, typer.Option("--step", min=1, metavar="PIXELS", help="distance between window starts")] = 240,
    thresh_size: Annotated[int, typer.Option("--thresh-size", min=0, metavar="PIXELS",
                           help="add a last window flush with the border when more than this is left over")] = 0,
    scales: Annotated[str, typer.Option("--scales", help="comma-separated downscale factors in [0.01, 1], e.g. 1,0.75,0.5,0.3333")] = "1",
    meta: Annotated[Optional[Path], typer.Option("--meta", help="meta file (default OUTPUT/meta_info.txt)")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=MAX_WORKERS, help="processes")] = min(4, os.cpu_count() or 1),
) -> None:
    raise typer.Exit(_prepare(input, output, crop_size, step, thresh_size, scales, meta, workers,
                              prog=ctx.info_name or "realesr-portable prepare"))


def main(argv: list[str] | None = None, prog: str = "realesr-portable prepare") -> int:
    """Parse `argv` (default: the process arguments) and cut; returns the exit code."""
    return run_command(app, list(sys.argv[1:] if argv is None else argv), prog)


def parse_scales(text: str) -> tuple[float, ...]:
    """`--scales`: factors in [MIN_SCALE, 1] whose sub-image names differ (0.5 and 0.50 would write the
    same files twice and list them twice in the meta file)."""
    try:
        scales = tuple(float(s) for s in text.split(","))
    except ValueError:
        raise UsageError(f"--scales must be numbers separated by commas, got {text!r}") from None
    if any(not MIN_SCALE <= s <= 1 for s in scales):  # also refuses nan; 1e-9 once cut 1x1 "crops"
        raise UsageError(f"--scales: each factor must be between {MIN_SCALE:g} and 1")
    tags = [scale_tag(s) for s in scales]
    twice = next((s for s, tag in zip(scales, tags) if tags.count(tag) > 1), None)
    if twice is not None:
        raise UsageError(f"--scales lists {twice:g} more than once (as written or to 6 digits)")
    return scales


def inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or below it, by resolved path and by (device, inode) of each
    ancestor, so neither a symlink, `..` nor a second mount of the same folder hides it."""
    target = Path(os.path.realpath(path))  # unlike Path.resolve, never raises on a link loop
    return any(same_file(folder, p) for p in (target, *target.parents))


def check_paths(input: Path, output: Path, meta: Path | None) -> None:
    """Refuse what would write into the inputs: an output folder in the input folder (a rerun
    would take its crops for images) or a meta file named as an image there."""
    if not input.is_dir():
        raise UsageError(f"input folder {input} does not exist")
    if inside(output, input):
        raise UsageError(f"output folder {output} is inside the input folder {input}; choose one outside it")
    if meta is not None:
        refuse_special(meta)
        if meta.suffix.lower() in SUFFIXES and inside(meta, input):
            raise UsageError(f"--meta {meta} is named like an image inside the input folder {input}; choose another name")


def not_an_input(entry: Path) -> str:
    """Why an entry that is neither a folder nor a regular file cannot be read as an image."""
    kind = special_kind(entry)
    if kind is not None:
        return f"not a regular file ({kind})"
    try:
        os.stat(entry)
    except OSError as exc:  # a broken link, a link loop
        return exc.strerror or str(exc)
    return "not a regular file"


def list_inputs(input: Path, scales: tuple[float, ...]) -> tuple[list[Path], list[str]]:
    """The images under `input` (sorted) and one failure line for each entry that is skipped:
    no regular file (a FIFO would block the reader), or an image whose sub-images would
    overwrite those of an earlier one: the same name stem (`a.png`, `a.jpg`), or a stem that
    another's downscaled copy takes (`a_T05.png` at 1 and `a.png` at 0.5)."""
    files: list[Path] = []
    failures: list[str] = []
    stems: dict[str, Path] = {}
    for entry in sorted(input.rglob("*")):
        if entry.is_dir():
            continue
        if not entry.is_file():
            failures.append(f"{entry}: {not_an_input(entry)}; skipped")
        elif entry.suffix.lower() in SUFFIXES:
            stem = entry.relative_to(input).with_suffix("").as_posix()
            names = [stem + scale_tag(s) for s in scales]
            taken = next((stems[name] for name in names if name in stems), None)
            if taken is not None:
                failures.append(f"{entry}: skipped, its sub-images would overwrite those of {taken}")
            else:
                stems.update(dict.fromkeys(names, entry))
                files.append(entry)
    return files, failures


def _prepare(input: Path, output: Path, crop_size: int, step: int, thresh: int, scales_text: str,
             meta: Path | None, workers: int, prog: str = "realesr-portable prepare") -> int:
    with errors_exit(prog, setup=True):  # the options, the input folder, the outputs: bad usage, exit 2
        scales = parse_scales(scales_text)
        check_paths(input, output, meta)
    # from here on an error is a failure of the work: `run_command` gives it one line and exit 1
    files, failures = list_inputs(input, scales)
    for line in failures:
        print(f"{prog}: error: {line}", file=sys.stderr)
    if not files:
        raise UserError(f"no images found under {input}")
    output.mkdir(parents=True, exist_ok=True)
    jobs = [(f, f.relative_to(input), output, crop_size, step, thresh, scales) for f in files]
    lines: list[str] = []
    errors: list[str] = []
    if min(workers, len(jobs)) > 1:
        results = _cut_in_processes(jobs, min(workers, len(jobs)), output)
    else:
        results = [cut_one(*job) for job in jobs]
    for written, err in results:
        lines += written
        if err:
            errors.append(err)
            print(f"skipped unreadable {err}", file=sys.stderr)
    meta = meta or output / "meta_info.txt"
    meta.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(meta, "".join(f"{line}\n" for line in lines).encode("utf-8"))
    print(f"{len(lines)} sub-images from {len(files) - len(errors)} images ({len(errors)} unreadable, "
          f"{len(failures)} skipped); meta file {meta}")
    return 0 if len(errors) < len(files) and not failures else EXIT_FAILED


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the parent, which stops them all, and die quietly on the parent's
    SIGTERM (they inherit its handler, which raised inside each and printed a traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _cut_in_processes(jobs: list[tuple], workers: int, output: Path) -> list[tuple[list[str], str]]:
    """`cut_one` over a process pool that an interrupt stops at once: a ProcessPoolExecutor
    waited for every queued image first (SIGTERM: minutes; SIGINT: until the end)."""
    pool = multiprocessing.get_context().Pool(workers, initializer=_ignore_interrupts)
    try:
        results = pool.starmap(cut_one, jobs, chunksize=1)
        pool.close()
        return results
    except BaseException:
        pool.terminate()  # a worker killed mid-write leaves its temporary file: removed below
        pool.join()
        for part in output.rglob(".*.part"):  # the workers are gone: no need to wait for their files to age
            if writer_gone(part):
                part.unlink(missing_ok=True)
        raise
    finally:
        pool.join()


if __name__ == "__main__":
    sys.exit(main())
