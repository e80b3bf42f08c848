"""Hostile input to the C++ runner (issue 17 items 1, 11-16 and "-i given twice"; the audit's
named pipes, /dev/zero, folders, huge images and --name=value flags).

Each case once crashed it, exited 0 with a wrong result, or printed more than one line: now every
one is one `error:` line, a non-zero exit, no output file and the input untouched.
"""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploy_support import build_runner, run_cli
from fuzz_cases import CONV2, RESIZE
from hostile_support import edited_model, official_sidecar, overflow_model, replace_once
from realesr_portable.image.io import ImageError, read_image

V3 = "realesr-animevideov3-x2"


@pytest.fixture(scope="module")
def runner() -> Path:
    return build_runner("x86_64")


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (9, 7, 3), dtype=np.uint8)).save(path)
    return path


def _model(tmp_path: Path, edit=lambda t: t, sidecar: dict | None = None) -> Path:
    folder = Path(tempfile.mkdtemp(dir=tmp_path, prefix="model"))
    return edited_model(folder, V3, edit, sidecar)


def _refused(proc, code: int, message: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0], proc.stderr
    assert "FATAL" not in proc.stderr and "Traceback" not in proc.stderr


def _nothing_written(folder: Path) -> None:
    assert [p.name for p in folder.iterdir() if p.name.startswith("out")] == []


def test_output_onto_the_input_is_refused(runner: Path, photo: Path, tmp_path: Path) -> None:
    before = photo.read_bytes()
    link, symlink = tmp_path / "hardlink.png", tmp_path / "symlink.png"
    os.link(photo, link)
    symlink.symlink_to(photo)
    for target in (photo, link, symlink, tmp_path / "." / "in.png"):
        proc = run_cli(runner, ["-i", photo, "-o", target, "-m", _model(tmp_path)])
        _refused(proc, 2, "output would overwrite the input")
        assert photo.read_bytes() == before


@pytest.mark.parametrize("value", ["100000", "50000", "257", "0", "-3", "2147483647", "99999999999999999999", "2x", ""])
def test_threads_out_of_range_is_one_line(runner: Path, photo: Path, tmp_path: Path, value: str) -> None:
    proc = run_cli(runner, ["-i", photo, "-o", tmp_path / "out.png", "-m", _model(tmp_path), "--threads", value])
    _refused(proc, 2, "--threads needs an integer in 1..256")
    _nothing_written(tmp_path)


def test_threads_at_the_limits_run(runner: Path, photo: Path, tmp_path: Path) -> None:
    for value in ("1", "256"):
        out = tmp_path / f"out{value}.png"
        proc = run_cli(runner, ["-i", photo, "-o", out, "-m", _model(tmp_path), "--threads", value])
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        with Image.open(out) as im:
            assert im.size == (14, 18)


def _conv2(edit: str) -> str:
    key = edit.split("=")[0]
    return " ".join(t for t in CONV2.split() if not t.startswith(f"{key}=")) + f" {edit}"


GRAPHS = {
    "dilation 1000": (replace_once(CONV2, _conv2("2=1000")), "layer Conv_2: param 2=1000 is outside 1..16"),
    "pad 100000": (replace_once(CONV2, _conv2("4=100000")), "layer Conv_2: param 4=100000 is outside -234..256"),
    "weights for 32 channels": (replace_once(CONV2, _conv2("6=18432")), "weight count 18432 does not fit 64 input channels"),
    "interp scale 100000": (replace_once(RESIZE, RESIZE.replace("1=4.000000e+00 2=4.000000e+00", "1=1.000000e+05 2=1.000000e+05")),
                            "layer Resize_37: param 1=1.000000e+05 is outside 0.0625..16"),
}


@pytest.mark.parametrize("case", list(GRAPHS))
def test_graphs_ncnn_would_crash_on_are_refused(runner: Path, photo: Path, tmp_path: Path, case: str) -> None:
    edit, message = GRAPHS[case]
    proc = run_cli(runner, ["-i", photo, "-o", tmp_path / "out.png", "-m", _model(tmp_path, edit)])
    _refused(proc, 1, message)
    _nothing_written(tmp_path)


SIDECARS = {
    "size_multiple 100000": ({"size_multiple": 100000}, "size_multiple 100000 is not in 1..64"),
    "in_channels 1 for an RGB graph": ({"in_channels": 1}, "weight count 1728 does not fit 1 input channels"),
    "tile_pad 5000": ({"tile_pad": 5000}, "tile_pad 5000 is not in 0..1024"),
    "scale 2**40": ({"scale": 2**40}, "scale 1099511627776 is not in 1..16"),
    "scale 2**63 (beyond int64)": ({"scale": 2**63}, "is not in 1..16"),
}


@pytest.mark.parametrize("case", list(SIDECARS))
def test_sidecars_out_of_range_are_refused(runner: Path, photo: Path, tmp_path: Path, case: str) -> None:
    change, message = SIDECARS[case]
    param = _model(tmp_path, sidecar={**official_sidecar(V3), **change})
    proc = run_cli(runner, ["-i", photo, "-o", tmp_path / "out.png", "-m", param])
    _refused(proc, 1, message)
    _nothing_written(tmp_path)


def test_jpeg_output_is_jpeg_and_unknown_formats_are_refused(runner: Path, photo: Path, tmp_path: Path) -> None:
    param = _model(tmp_path)
    for name in ("out.jpg", "out.JPEG"):
        proc = run_cli(runner, ["-i", photo, "-o", tmp_path / name, "-m", param])
        assert proc.returncode == 0, proc.stderr
        with Image.open(tmp_path / name) as im:
            assert im.format == "JPEG" and im.size == (14, 18)
        png = tmp_path / "ref.png"
        assert run_cli(runner, ["-i", photo, "-o", png, "-m", param]).returncode == 0
        with Image.open(tmp_path / name) as im, Image.open(png) as ref:
            diff = np.abs(np.asarray(im, dtype=np.int16) - np.asarray(ref, dtype=np.int16))
        assert diff.mean() < 8  # quality 95: the same picture, not bit-equal
    for name in ("out.webp", "out", "out.png.txt"):
        proc = run_cli(runner, ["-i", photo, "-o", tmp_path / name, "-m", param])
        _refused(proc, 2, "unsupported output format")
        assert not (tmp_path / name).exists()


@pytest.mark.parametrize("flag", ["-i", "-o", "-m", "-t", "--threads", "--fp32"])
def test_a_flag_given_twice_is_refused(runner: Path, photo: Path, tmp_path: Path, flag: str) -> None:
    param = _model(tmp_path)
    other = tmp_path / "other.png"
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(other)
    values = {"-i": [photo, other], "-o": [tmp_path / "out.png", tmp_path / "out2.png"], "-m": [param, param],
              "-t": ["0", "4"], "--threads": ["1", "2"], "--fp32": []}[flag]
    args = ["-i", photo, "-o", tmp_path / "out.png", "-m", param]
    if flag in ("-i", "-o", "-m"):
        extra = [flag, values[1]]
    else:
        extra = [flag, *values[:1], flag, *values[1:]]
    proc = run_cli(runner, args + extra)
    _refused(proc, 2, f"{flag} given twice")
    _nothing_written(tmp_path)


def test_a_failed_write_leaves_no_partial_file(runner: Path, photo: Path, tmp_path: Path) -> None:
    """The output goes to a temporary file renamed at the end: a target that cannot be replaced
    (a folder named out.png) leaves neither it changed nor a temporary file behind."""
    (tmp_path / "out.png").mkdir()
    proc = run_cli(runner, ["-i", photo, "-o", tmp_path / "out.png", "-m", _model(tmp_path)])
    _refused(proc, 2, "the output is a directory, not a regular file")  # said before any work
    assert (tmp_path / "out.png").is_dir() and not list(tmp_path.glob("out.png.*"))


def test_help_and_no_arguments(runner: Path) -> None:
    helped = run_cli(runner, ["--help"])
    assert helped.returncode == 0 and helped.stdout.startswith("usage: ") and helped.stderr == ""
    bare = run_cli(runner, [])
    assert bare.returncode == 2 and bare.stderr.startswith("usage: ")


def test_a_tile_out_of_memory_is_one_line(runner: Path, tmp_path: Path) -> None:
    """A tile ncnn cannot allocate (here: a 400 MB address-space limit) made it print "FATAL ERROR!
    pool allocator destroyed too early" before the runner's own line (issue 17 item 16)."""
    src = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)).save(src)
    limit = 400 << 20
    proc = subprocess.run([str(runner), "-i", str(src), "-o", str(tmp_path / "out.png"), "-m", str(_model(tmp_path)),
                           "--threads", "1", "--fp32"], capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    _refused(proc, 1, "ncnn failed on a 710x710 tile")
    _nothing_written(tmp_path)


# A hang (a named pipe, /dev/zero) fails the test instead of blocking it.
QUICK = 60


def _quick(runner: Path, args: list[str | Path]) -> subprocess.CompletedProcess[str]:
    return run_cli(runner, args, timeout=QUICK)


def _special(tmp_path: Path, kind: str) -> Path:
    """A path that is not a regular file: a named pipe (also behind a symlink), a device, a folder."""
    if kind == "directory":
        (tmp_path / "folder.png").mkdir()
        return tmp_path / "folder.png"
    if kind == "device":
        return Path("/dev/zero")
    os.mkfifo(tmp_path / "fifo.png")
    if kind == "symlink to a named pipe":
        (tmp_path / "link.png").symlink_to(tmp_path / "fifo.png")
        return tmp_path / "link.png"
    return tmp_path / "fifo.png"


NOT_FILES = {"named pipe": "a named pipe", "symlink to a named pipe": "a named pipe",
             "device": "a device", "directory": "a directory"}


@pytest.mark.parametrize("kind", list(NOT_FILES))
def test_an_input_that_is_not_a_regular_file_is_refused(runner: Path, tmp_path: Path, kind: str) -> None:
    """A named pipe or /dev/zero was read forever; a folder printed "basic_filebuf::underflow"."""
    proc = _quick(runner, ["-i", _special(tmp_path, kind), "-o", tmp_path / "out.png", "-m", _model(tmp_path)])
    _refused(proc, 1, f"cannot read the image: it is {NOT_FILES[kind]}, not a regular file")
    _nothing_written(tmp_path)


@pytest.mark.parametrize("suffix, what, kind", [(".param", "the model .param", "directory"),
                                                (".bin", "the model weights", "device"),
                                                (".json", "the model sidecar", "named pipe")])
def test_model_files_that_are_not_regular_files_are_refused(runner: Path, photo: Path, tmp_path: Path,
                                                            suffix: str, what: str, kind: str) -> None:
    param = _model(tmp_path)
    target = param.with_suffix(suffix)
    target.unlink()
    if kind == "directory":
        target.mkdir()
    elif kind == "device":
        target.symlink_to("/dev/zero")
    else:
        os.mkfifo(target)
    proc = _quick(runner, ["-i", photo, "-o", tmp_path / "out.png", "-m", param])
    _refused(proc, 1, f"cannot read {what}: it is {NOT_FILES[kind]}, not a regular file")
    _nothing_written(tmp_path)


def test_files_over_1_gib_are_refused_unread(runner: Path, photo: Path, tmp_path: Path) -> None:
    """The cap on every file read: 1 GiB + 1 byte (sparse) is refused from its size, at once."""
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate((1 << 30) + 1)
    proc = _quick(runner, ["-i", big, "-o", tmp_path / "out.png", "-m", _model(tmp_path)])
    _refused(proc, 1, "big.png: cannot read the image: it is larger than the limit of 1073741824 bytes (1 GiB)")
    param = _model(tmp_path)
    param.with_suffix(".bin").unlink()
    param.with_suffix(".bin").symlink_to(big)
    proc = _quick(runner, ["-i", photo, "-o", tmp_path / "out.png", "-m", param])
    _refused(proc, 1, "cannot read the model weights: it is larger than the limit of 1073741824 bytes")
    _nothing_written(tmp_path)


def _blank_png(path: Path, width: int, height: int) -> Path:
    """A black RGB PNG written row by row: 12000x12000 without 432 MB in the test process."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(1)
    row = bytes(1 + 3 * width)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _blank_png(tmp_path_factory.mktemp("huge") / "huge.png", 12000, 12000)


def test_max_pixels_is_the_python_clis_limit_and_message(runner: Path, photo: Path, huge_png: Path, tmp_path: Path) -> None:
    """144 MP is over the default 100 MP and refused from its header; the message is the Python
    CLI's own (read_image's), word for word; --max-pixels moves the limit."""
    proc = _quick(runner, ["-i", huge_png, "-o", tmp_path / "out.png", "-m", _model(tmp_path)])
    _refused(proc, 1, "12000x12000 = 144000000 pixels exceeds the limit of 100000000 (raise it with --max-pixels)")
    proc = _quick(runner, ["-i", photo, "-o", tmp_path / "out.png", "-m", _model(tmp_path), "--max-pixels", "62"])
    with pytest.raises(ImageError) as python:
        read_image(photo, max_pixels=62)
    _refused(proc, 1, "7x9 = 63 pixels exceeds the limit of 62")
    assert proc.stderr.strip() == f"error: {python.value}"
    _nothing_written(tmp_path)
    ok = _quick(runner, ["-i", photo, "-o", tmp_path / "out.png", "-m", _model(tmp_path), "--max-pixels", "63"])
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr


def _limited(runner: Path, args: list[str | Path], megabytes: int) -> subprocess.CompletedProcess[str]:
    limit = megabytes << 20
    return subprocess.run([str(runner), *map(str, args)], capture_output=True, text=True, timeout=QUICK,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))


@pytest.mark.parametrize("megabytes, tile, message", [
    (400, 64, "huge.png: out of memory for an image of 12000x12000"),  # decoding (stb's 432 MB)
    (1000, 64, "huge.png: out of memory for an image of 12000x12000 (upscaled: 24000x24000)"),  # the output
    (1000, 0, "huge.png: out of memory for an image of 12000x12000"),  # the output, or ncnn's one tile
])
def test_a_huge_image_out_of_memory_is_one_line(runner: Path, huge_png: Path, tmp_path: Path,
                                                megabytes: int, tile: int, message: str) -> None:
    """Under an address-space limit a 12000x12000 PNG printed "error: std::bad_alloc"."""
    args = ["-i", huge_png, "-o", tmp_path / "out.png", "-m", _model(tmp_path), "--max-pixels", "0",
            "--threads", "1", "-t", tile]
    _refused(_limited(runner, args, megabytes), 1, message)
    _nothing_written(tmp_path)


def test_a_whole_image_tile_ncnn_cannot_allocate_is_one_line(runner: Path, tmp_path: Path) -> None:
    """-t 0 on 5000x5000 under 600 MB: ncnn's input Mat came back empty and the runner wrote into
    it (SIGSEGV)."""
    src = _blank_png(tmp_path / "mid.png", 5000, 5000)
    args = ["-i", src, "-o", tmp_path / "out.png", "-m", _model(tmp_path), "--threads", "1", "-t", "0"]
    _refused(_limited(runner, args, 600), 1, "ncnn failed on a 5010x5010 tile (out of memory)")
    _nothing_written(tmp_path)


def test_long_options_take_name_equals_value(runner: Path, photo: Path, tmp_path: Path) -> None:
    """--threads=4 said "needs a value": every long option now takes --name=VALUE, through the
    same checks as --name VALUE; a short option's =VALUE is refused with the form to use."""
    param = _model(tmp_path)
    ok = _quick(runner, ["-i", photo, "-o", tmp_path / "out.png", "-m", param, "--threads=1", "--max-pixels=63"])
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (14, 18)
    (tmp_path / "out.png").unlink()
    base = ["-i", photo, "-o", tmp_path / "out.png", "-m", param]
    for extra, message in (
        (["--threads=0"], "--threads needs an integer in 1..256, got '0'"),
        (["--threads="], "--threads needs an integer in 1..256, got ''"),
        (["--threads=1", "--threads", "2"], "--threads given twice"),
        (["--max-pixels=62"], None),
        (["--fp32=yes"], "--fp32 takes no value"),
        (["-t=4"], "-t=4: write -t 4"),
        (["--tile=4"], "unknown option --tile"),
    ):
        proc = _quick(runner, base + extra)
        if message is None:
            _refused(proc, 1, "pixels exceeds the limit of 62")
        else:
            _refused(proc, 2, message)
        _nothing_written(tmp_path)


def test_nan_output_is_one_line_and_no_file(runner: Path, photo: Path, tmp_path: Path) -> None:
    """Weights past fp32's range make inf then NaN even on the CPU: clamping NaN to a byte is
    undefined in C++ (it wrote whatever came out); the Python CLI's line instead, exit 1, no file."""
    import json

    folder = tmp_path / "nan"
    folder.mkdir()
    param = overflow_model(folder, up=1e38)
    sidecar = {**official_sidecar(V3), "name": "overflow", "fp16_weights": False, "tile_pad": 2}
    param.with_suffix(".json").write_text(json.dumps(sidecar))
    proc = run_cli(runner, ["-i", photo, "-o", tmp_path / "out.png", "-m", param, "-g", "-1"])
    _refused(proc, 1, "the model produced NaN/inf on the tile at (0, 0)")
    _nothing_written(tmp_path)


def test_an_output_that_is_a_pipe_is_refused(runner: Path, photo: Path, tmp_path: Path) -> None:
    """-o naming a named pipe (or a device) would be replaced by a plain file by the rename."""
    import stat

    fifo = tmp_path / "out.png"
    os.mkfifo(fifo)
    proc = run_cli(runner, ["-i", photo, "-o", fifo, "-m", _model(tmp_path)])
    _refused(proc, 2, "the output is a named pipe, not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
