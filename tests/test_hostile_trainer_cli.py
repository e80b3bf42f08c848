"""Hostile input to the trainer's command lines: `preview`, `prepare` and `train`.

The rule: bad input is one line `PROG: error: ...` and a fixed exit code (2 for bad usage found
before any work, 1 for a failure during it), never a traceback or "internal error", never a
half-written output, and one bad file in a folder does not stop the others.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realesr_portable.trainer.cli import main as train_main
from realesr_portable.trainer.degradations.preview import main as preview_main
from realesr_portable.trainer.prepare_subimages import main as prepare_main
from train_support import make_folder, tiny_config, write_config

PREVIEW = "realesr-portable preview: error: "
PREPARE = "realesr-portable prepare: "
TRAIN = "realesr-portable train: error: "


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return err.strip().splitlines()


def _image(path: Path, size: int = 40) -> Path:
    rng = np.random.default_rng(size)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


# --- preview ---------------------------------------------------------------------------------

@pytest.fixture
def photo(tmp_path: Path) -> Path:
    return _image(tmp_path / "photo.png")


def _preview(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = preview_main([str(a) for a in args])
    lines = _lines(capsys)
    assert len(lines) == 1, lines
    return code, lines[0]


@pytest.mark.parametrize("seed", ["99999999999999999999999999", "-99999999999999999999999999", str(2**64)])
def test_preview_seed_out_of_torch_range_is_usage(seed: str, photo: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Once `internal error: ValueError: Overflow when unpacking long long` from manual_seed."""
    code, line = _preview(["-o", tmp_path / "g.png", "--rows", "1", "--size", "32", "--seed", seed, photo], capsys)
    assert code == 2 and "--seed" in line and not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("option", ["--rows", "--size", "--scale", "--seed"])
@pytest.mark.parametrize("value", ["0", "-1", "1e308", "nan", "inf", "abc", ""])
def test_preview_bad_numbers_are_usage(option: str, value: str, photo: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    args = ["-o", tmp_path / "g.png", "--rows", "1", "--size", "32", option, value, photo]
    if option == "--seed" and value in ("0", "-1"):  # both are seeds
        assert preview_main([str(a) for a in args]) == 0
        return
    code, line = _preview(args, capsys)
    assert code == 2 and line.startswith("realesr-portable preview: ") and not (tmp_path / "g.png").exists()


CONFIGS = {
    "malformed.yml": (b"first: [\n", "is not valid YAML"),  # once internal error: ParserError
    "python_tag.yml": (b"first: !!python/object:os.system 1\n", "is not valid YAML"),  # ConstructorError
    "binary.yml": (bytes(range(128, 256)) * 3, "is not UTF-8 text"),
    "huge.yml": (b"a: 1\n" * 300_000, "larger than 1 MiB"),  # once a minute of parsing
    "nul.yml": (b"\0\0\0", "is not valid YAML"),  # ReaderError
    "nan_probs.yml": (b"first:\n  resize_probs: [.nan, .nan, .nan]\n", "resize_probs"),  # passed the check
    "usm_radius.yml": (b"usm:\n  radius: 100000000\n", "radius"),  # ran for minutes
    "usm_huge.yml": (b"usm:\n  radius: 99999999999999999999999\n", "radius"),  # OverflowError
    "usm_nan.yml": (b"usm:\n  weight: .nan\n", "usm"),
    "upscale_x1000.yml": (b"first:\n  resize_probs: [1, 0, 0]\n  resize_range: [1, 1000]\n", "resize_range"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_preview_bad_config_files_are_usage(name: str, photo: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    data, fragment = CONFIGS[name]
    (tmp_path / name).write_bytes(data)
    out = tmp_path / "g.png"
    code, line = _preview(["-o", out, "--rows", "1", "--size", "32", "--config", tmp_path / name, photo], capsys)
    assert code == 2 and line.startswith(PREVIEW) and fragment in line, line
    assert not out.exists()


@pytest.mark.parametrize("kind", ["fifo", "folder", "missing", "loop", "empty", "device"])
def test_preview_config_that_is_no_regular_file_is_usage(kind: str, photo: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A FIFO once blocked the command for good; a device was read to the end."""
    config = {"fifo": tmp_path / "fifo", "folder": tmp_path, "missing": tmp_path / "none.yml",
              "loop": tmp_path / "loop", "empty": "", "device": "/dev/zero"}[kind]
    if kind == "fifo":
        os.mkfifo(config)
    if kind == "loop":
        os.symlink(config, config)
    code, line = _preview(["-o", tmp_path / "g.png", "--rows", "1", "--size", "32", "--config", config, photo], capsys)
    assert code == 2 and line.startswith(f"{PREVIEW}cannot read config "), line


def test_preview_refuses_outputs_before_the_work(photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder, a FIFO or a device as output: exit 2 before degrading anything; an input photo or
    the config as output: refused, the file kept."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    config = tmp_path / "deg.yml"
    config.write_text("first:\n  blur_prob: 0.5\n")
    before = photo.read_bytes()
    small = ["--rows", "1", "--size", "32"]
    cases = [(tmp_path, "is a directory"), (fifo, "not a regular file"), ("/dev/full", "not a regular file"),
             ("", "is a directory"), (photo, "is the input"), (config, "is the input")]
    for out, fragment in cases:
        code, line = _preview(["-o", out, *small, "--config", config, photo], capsys)
        assert code == 2 and line.startswith(PREVIEW) and fragment in line, (out, line)
    assert photo.read_bytes() == before and config.read_text().startswith("first:")
    link = tmp_path / "link.png"
    link.symlink_to(photo)
    code, line = _preview(["-o", link, *small, photo], capsys)
    assert code == 2 and "is the input" in line and photo.read_bytes() == before


def test_preview_output_as_a_symlink_loop_is_written(photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Once `internal error: RuntimeError: Symlink loop` from the same-file check."""
    loop = tmp_path / "loop.png"
    os.symlink(loop, loop)
    assert preview_main(["-o", str(loop), "--rows", "1", "--size", "32", str(photo)]) == 0
    with Image.open(loop) as im:
        assert im.format == "PNG"


def test_preview_unreadable_images_fail_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A pixel bomb (once `internal error: DecompressionBombError`) and a text file named .png:
    exit 1, the documented code for an image that cannot be read."""
    bomb = tmp_path / "bomb.png"
    with Image.new("1", (1, 1)) as im:
        im.save(bomb)
    data = bytearray(bomb.read_bytes())
    data[16:24] = (200_000).to_bytes(4, "big") * 2  # IHDR width and height, then its CRC
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    bomb.write_bytes(bytes(data))
    text = tmp_path / "text.png"
    text.write_text("not a png")
    for image in (bomb, text):
        code, line = _preview(["-o", tmp_path / "g.png", "--rows", "1", "--size", "32", image], capsys)
        assert code == 1 and line.startswith(f"{PREVIEW}{image}"), line
    assert not (tmp_path / "g.png").exists()


def test_preview_reads_16_bit_images_at_their_levels(tmp_path: Path) -> None:
    """The trainer's reader: 16-bit gray is scaled by 65535, not clipped to 255 as convert('RGB') did."""
    from realesr_portable.trainer.degradations.preview import load_crops

    path = tmp_path / "deep.png"
    Image.fromarray(np.full((32, 32), 32768, dtype=np.uint16)).save(path)
    crops = load_crops([path], 1, 32)
    assert crops.shape == (1, 3, 32, 32) and abs(float(crops.mean()) - 32768 / 65535) < 1e-6


# --- prepare ---------------------------------------------------------------------------------

@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    _image(folder / "a.png")
    _image(folder / "sub" / "b.png", 48)
    return folder


def test_prepare_reports_fifos_and_broken_links_and_cuts_the_rest(src: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Once skipped without a word and exit 0."""
    os.mkfifo(src / "pipe.png")
    os.mkfifo(src / "sub" / "control")
    (src / "gone.png").symlink_to(src / "missing.png")
    (src / "loop.jpg").symlink_to(src / "loop.jpg")
    out = tmp_path / "out"
    assert prepare_main([str(src), str(out), "--crop-size", "16", "--workers", "1"]) == 1
    lines = _lines(capsys)
    assert lines == [
        f"{PREPARE}error: {src / 'gone.png'}: No such file or directory; skipped",
        f"{PREPARE}error: {src / 'loop.jpg'}: Too many levels of symbolic links; skipped",
        f"{PREPARE}error: {src / 'pipe.png'}: not a regular file (a FIFO); skipped",
        f"{PREPARE}error: {src / 'sub' / 'control'}: not a regular file (a FIFO); skipped",
    ]
    meta = (out / "meta_info.txt").read_text().splitlines()
    assert meta == [f"a_s{i:03d}.png" for i in range(1, 5)] + [f"sub/b_s{i:03d}.png" for i in range(1, 5)]
    assert all((out / line).is_file() for line in meta)


def test_prepare_with_workers_reports_a_fifo_too(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.mkfifo(src / "pipe.png")
    assert prepare_main([str(src), str(tmp_path / "out"), "--crop-size", "32", "--workers", "2"]) == 1
    assert _lines(capsys) == [f"{PREPARE}error: {src / 'pipe.png'}: not a regular file (a FIFO); skipped"]
    assert len((tmp_path / "out" / "meta_info.txt").read_text().splitlines()) == 4 + 4


def test_prepare_only_fifos_is_no_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    os.mkfifo(folder / "pipe.png")
    assert prepare_main([str(folder), str(tmp_path / "out"), "--workers", "1"]) == 1
    assert _lines(capsys)[-1] == f"{PREPARE}error: no images found under {folder}"
    assert not (tmp_path / "out").exists()


def _inside(src: Path, tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "link").symlink_to(src)
    os.symlink(src / "loop", src / "loop")
    return {"same": src, "child": src / "crops", "deep": src / "sub" / "new" / "crops",
            "dotdot": src / "sub" / ".." / "crops", "via_link": tmp_path / "link" / "crops",
            "link_itself": tmp_path / "link", "loop": src / "loop"}


@pytest.mark.parametrize("where", ["same", "child", "deep", "dotdot", "via_link", "link_itself", "loop"])
def test_prepare_refuses_an_output_inside_its_input(where: str, src: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A rerun would cut the crops again; compared by resolved path and inode, not by string."""
    out = _inside(src, tmp_path)[where]
    before = sorted(p for p in src.rglob("*"))
    assert prepare_main([str(src), str(out), "--crop-size", "16", "--workers", "1"]) == 2
    assert _lines(capsys) == [f"{PREPARE}error: output folder {out} is inside the input folder {src}; choose one outside it"]
    assert sorted(p for p in src.rglob("*")) == before


def test_prepare_output_beside_or_above_the_input_is_fine(src: Path, tmp_path: Path) -> None:
    for out in (tmp_path / "src_sub", tmp_path / "out"):  # a name that starts like the input's is not inside it
        assert prepare_main([str(src), str(out), "--crop-size", "32", "--workers", "1"]) == 0
        assert (out / "meta_info.txt").is_file()


def test_prepare_refuses_a_bind_mount_of_the_input_by_inode(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Same (device, inode) under another path (a bind mount, simulated): still the input folder."""
    from realesr_portable.trainer import prepare_subimages

    other = tmp_path / "mnt"
    other.mkdir()
    real_samefile = os.path.samefile
    monkeypatch.setattr(prepare_subimages.os.path, "samefile",
                        lambda a, b: Path(b).resolve() == other.resolve() or real_samefile(a, b))
    assert prepare_main([str(src), str(other / "crops"), "--workers", "1"]) == 2
    assert "is inside the input folder" in _lines(capsys)[0]


def test_prepare_name_clashes_and_duplicate_scales(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`a.png` and `a.jpg` once wrote the same `a_s001.png` (one lost, listed twice); `--scales
    0.5,0.50` cut everything twice."""
    Image.open(src / "a.png").convert("RGB").save(src / "a.jpg")
    out = tmp_path / "out"
    assert prepare_main([str(src), str(out), "--crop-size", "32", "--workers", "1"]) == 1
    assert _lines(capsys) == [f"{PREPARE}error: {src / 'a.png'}: skipped, its sub-images would overwrite those of {src / 'a.jpg'}"]
    meta = (out / "meta_info.txt").read_text().splitlines()
    assert len(meta) == len(set(meta)) == 4 + 4
    for scales in ("0.5,0.50", "1,1", "0.3333331,0.3333332"):
        assert prepare_main([str(src), str(tmp_path / "o2"), "--scales", scales, "--workers", "1"]) == 2
        assert "more than once" in _lines(capsys)[0]


def test_prepare_a_downscaled_copy_never_takes_another_images_names(src: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`a.png` at 0.5 and `a_T05.png` at 1 both once wrote `a_T05_s001.png`: the second replaced
    the first's crop and the meta file listed it twice."""
    Image.open(src / "a.png").convert("RGB").resize((64, 64)).save(src / "a_T05.png")
    out = tmp_path / "out"
    assert prepare_main([str(src), str(out), "--crop-size", "16", "--step", "16", "--scales", "1,0.5", "--workers", "1"]) == 1
    assert _lines(capsys) == [f"{PREPARE}error: {src / 'a_T05.png'}: skipped, its sub-images would overwrite those of {src / 'a.png'}"]
    meta = (out / "meta_info.txt").read_text().splitlines()
    assert len(meta) == len(set(meta)) > 0
    assert not any(Path(line).stem.startswith("a_T05_T05") for line in meta)


@pytest.mark.parametrize("scales", ["1e-9", "nan", "1,0.009", "inf", "-0.5"])
def test_prepare_refuses_scales_that_leave_nothing_to_train_from(src: Path, tmp_path: Path, scales: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`--scales 1e-9` was accepted (exit 0): a copy that small holds nothing to train from."""
    assert prepare_main([str(src), str(tmp_path / "out"), "--scales", scales, "--workers", "1"]) == 2
    assert _lines(capsys) == [f"{PREPARE}error: --scales: each factor must be between 0.01 and 1"]
    assert not (tmp_path / "out").exists()


def test_prepare_meta_file_checks(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--meta over an input image once replaced it; a folder, FIFO or device once failed after
    all the cutting; a missing folder once named the temporary file."""
    before = (src / "a.png").read_bytes()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    run = [str(src), str(tmp_path / "out"), "--crop-size", "32", "--workers", "1", "--meta"]
    for meta, fragment in ((src / "a.png", "named like an image inside the input folder"),
                           (src / "new.png", "named like an image inside the input folder"),
                           (tmp_path, "is a directory"), (fifo, "not a regular file"), ("/dev/full", "not a regular file")):
        assert prepare_main([*run, str(meta)]) == 2
        line, = _lines(capsys)
        assert line.startswith(f"{PREPARE}error: ") and fragment in line, line
    assert (src / "a.png").read_bytes() == before and not (tmp_path / "out").exists()
    meta = tmp_path / "new" / "deeper" / "meta.txt"
    assert prepare_main([*run, str(meta)]) == 0
    assert len(meta.read_text().splitlines()) == 8


def test_prepare_worker_count_is_bounded(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--workers 100000 once meant 100000 processes."""
    assert prepare_main([str(src), str(tmp_path / "out"), "--workers", "100000"]) == 2
    assert "--workers" in _lines(capsys)[0]


# --- train -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def train_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    make_folder(root / "hr", 64)
    cfg = tiny_config(root, root / "no_vgg.pth", stage="esrnet", train={"stage": "esrnet"})
    return write_config(root / "cfg.yml", cfg)


def _train(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = train_main([str(a) for a in args])
    lines = _lines(capsys)
    assert len(lines) == 1, lines
    return code, lines[0]


@pytest.mark.parametrize("override, fragment", [
    ("train.lr_g=.nan", "positive and finite"),  # once `internal error: ValueError: Invalid learning rate: nan`
    ("train.lr_g=.inf", "positive and finite"),
    ("train.betas=[.nan, 0.9]", "train.betas"),
    ("train.betas=[1.5, 0.9]", "train.betas"),
    ("data.num_workers=-1", "data.num_workers"),  # once internal error from the DataLoader
    ("data.num_workers=100000", "data.num_workers"),
    ("device=cuda:x", "device"),  # once internal error after loading the data
    ("network_g.num_feat=-1", "network_g.num_feat"),  # once `internal error: RuntimeError: ... negative dimension`
    ("network_g.num_feat=0", "network_g.num_feat"),  # built a network of empty tensors
    ("network_g.num_block=100000000", "network_g.num_block"),  # built for minutes
    ("name=../escaped", "config key 'name'"),  # the run folder outside experiments_root
    ("name=", "config key 'name'"),
    ("name=.", "config key 'name'"),
    ("name=/abs", "config key 'name'"),
    ("degradation.usm.radius=100000000", "radius"),
    ("degradation.first.resize_range=[1, 1000]", "resize_range"),
    # round 5: each once passed the start checks and failed later as an internal error, or ran wrong
    ("train.gamma=.nan", "train.gamma"),  # trained to NaN weights and said "done"
    ("train.gamma=-1", "train.gamma"),  # gradient ascent, exit 0
    ("train.weight_decay=-1", "train.weight_decay"),
    ("train.lr_g=1e38", "at most 1e+30"),  # float32 overflow mid-setup
    ("train.layer_weights.conv9_9=1", "unknown VGG19 layers ['conv9_9']"),
    ("export.name=../../evil", "export.name"),  # found only after the whole training
    ("val.max_size=0", "val.max_size"),
    ("degradation.usm.weight=1e300", "weight <= 100"),  # float32 overflow in train and preview
    ("path.pretrain_g=/nonexistent.pth", "path.pretrain_g': /nonexistent.pth does not exist"),  # dry-run said ok
    ("val.every=2", "val.dataroot_gt"),  # with a missing val folder (set below)
])
def test_train_bad_values_are_usage(override: str, fragment: str, train_config: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["--set", "val.dataroot_gt=/nonexistent"] if override == "val.every=2" else []
    code, line = _train(["--config", train_config, "--set", override, *extra, "--dry-run"], capsys)
    assert code == 2 and line.startswith(TRAIN) and fragment in line, line


def test_train_dry_run_accepts_the_tiny_config(train_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The control case: the same config without an override passes, so the ones above fail on their value."""
    assert train_main(["--config", str(train_config), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("ok: tiny")


def test_train_empty_resume_is_usage(train_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--resume ""` once trained from scratch, silently."""
    code, line = _train(["--config", train_config, "--resume", "", "--dry-run"], capsys)
    assert code == 2 and line == f"{TRAIN}--resume needs 'auto' or a checkpoint file, got an empty value"


@pytest.mark.parametrize("kind, reason", [("fifo", "not a regular file"), ("folder", "not a regular file"),
                                          ("loop", "Too many levels of symbolic links"), ("device", "not a regular file")])
def test_train_resume_from_no_regular_file(kind: str, reason: str, train_config: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A FIFO once read as "the file is empty (0 bytes)"; a loop as "[Errno 40] ..."."""
    path = {"fifo": tmp_path / "fifo", "folder": tmp_path, "loop": tmp_path / "loop", "device": Path("/dev/zero")}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    if kind == "loop":
        os.symlink(path, path)
    code, line = _train(["--config", train_config, "--export", "--resume", path], capsys)
    assert code == 1 and line == f"{TRAIN}cannot read checkpoint {path}: {reason}"


class _RunsCode:
    """Pickles as a call of os.system: what a hostile checkpoint or VGG file would hold."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, ("true",)


@pytest.mark.parametrize("kind", ["code", "junk", "zip-junk", "png"])
def test_train_resume_and_vgg_from_hostile_pickles_say_why_in_a_short_line(
        kind: str, train_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--resume and --vgg-weights once called torch.load themselves: a code pickle gave torch's
    paragraph on weights_only (~700 characters), garbage a bare number ("2154524277", a KeyError),
    and a pickle bomb was not bounded. Both now go through the converter's reader."""
    import pickle
    import zipfile

    from realesr_portable.trainer.vgg import VGGWeightsError, load_vgg19_state

    path = tmp_path / f"{kind}.pth"
    if kind == "code":
        path.write_bytes(pickle.dumps({"iteration": 1, "net_g": _RunsCode()}, protocol=2))  # as torch.save writes
    elif kind == "png":
        Image.new("RGB", (4, 4)).save(path, "PNG")
    elif kind == "junk":
        path.write_bytes(b"\x80\x02junk" * 50)
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")  # no version record, no tensors
    reason = {"code": "refused: the pickle references code or classes outside plain tensors",
              "junk": "truncated or not a PyTorch weights file", "zip-junk": "truncated or not a PyTorch weights file",
              "png": "not a PyTorch weights file (neither a torch.save archive nor a pickle)"}[kind]
    code, line = _train(["--config", train_config, "--export", "--resume", path], capsys)
    assert code == 1 and line.startswith(f"{TRAIN}cannot read checkpoint {path}: {reason}"), line
    assert len(line) < 400, line
    with pytest.raises(VGGWeightsError) as caught:
        load_vgg19_state(path)
    assert str(caught.value).startswith(f"cannot read VGG19 weights {path}: {reason}")


@pytest.mark.parametrize("kind", ["fifo", "binary", "folder"])
def test_train_meta_file_that_cannot_be_read(kind: str, train_config: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A FIFO as data.meta_file once blocked for good; binary data was `internal error: UnicodeDecodeError`."""
    meta = {"fifo": tmp_path / "fifo", "binary": tmp_path / "meta.txt", "folder": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(meta)
    if kind == "binary":
        meta.write_bytes(b"\xff\xfe\x00 not text\n")
    code, line = _train(["--config", train_config, "--set", f"data.meta_file={meta}", "--dry-run"], capsys)
    assert code == 1 and line.startswith(TRAIN) and str(meta) in line, line
    assert ("UTF-8" in line) if kind == "binary" else line.endswith("not a regular file")


def test_train_cuda_device_without_cuda_is_one_line(train_config: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Once `internal error: ValueError: device 'cuda:0' requested but CUDA is not available`."""
    import torch

    from realesr_portable.trainer.distributed import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, line = _train(["--config", train_config, "--set", "device=cuda:0"], capsys)
    assert code == 1 and line == f"{TRAIN}device 'cuda:0' requested but CUDA is not available"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    from realesr_portable.errors import UserError

    with pytest.raises(UserError, match="only 1 CUDA device"):
        pick_device("cuda:3", 0)


def test_train_refuses_a_second_run_into_a_folder_with_checkpoints(train_config: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A rerun under one name without --resume replaced the first run's checkpoints one by one,
    and a later --resume auto picked the other run's newest."""
    import shutil

    from realesr_portable.trainer import config as config_mod

    run_dir = config_mod.load(train_config, []).run_dir
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "iter_00000008.pth").write_bytes(b"an earlier run's")
    try:
        code, line = _train(["--config", train_config], capsys)
        assert code == 2 and "already holds this run's checkpoints (newest: iteration 8)" in line, line
        assert (run_dir / "checkpoints" / "iter_00000008.pth").read_bytes() == b"an earlier run's"
    finally:
        shutil.rmtree(run_dir)


def test_train_refuses_a_run_folder_another_training_holds(train_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two trainings into one folder interleaved their checkpoints and log records."""
    from realesr_portable.trainer import checkpoint as ckpt
    from realesr_portable.trainer import config as config_mod

    run_dir = config_mod.load(train_config, []).run_dir
    with ckpt.run_lock(run_dir):
        code, line = _train(["--config", train_config], capsys)
    assert code == 1 and line == f"{TRAIN}another training is writing {run_dir}; wait for it or choose another name"


def test_run_lock_removes_a_killed_saves_temporary_file(tmp_path: Path) -> None:
    """A SIGKILL during a checkpoint write left a .part (hundreds of MB for x4plus) forever."""
    import time

    from realesr_portable.atomic import STALE_AFTER_S
    from realesr_portable.trainer import checkpoint as ckpt

    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    part = folder / ".iter_00000013.pth.999999999.519e2b9b.part"
    part.write_bytes(b"half a checkpoint")
    old = time.time() - STALE_AFTER_S - 5
    os.utime(part, (old, old))
    with ckpt.run_lock(tmp_path / "run"):
        assert not part.exists()


def test_signals_wait_for_the_checkpoint_being_written() -> None:
    """Ctrl-C inside torch's zip writer ended as "internal error: RuntimeError: [enforce fail ...]"."""
    import signal

    from realesr_portable.trainer.checkpoint import signals_held

    reached = False
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            reached = True  # the interrupt waits until the write is done
    assert reached


@pytest.mark.parametrize("line", ["/etc/passwd", "../one/a.png", "sub/../../x.png"])
def test_meta_file_paths_stay_inside_the_data_folder(line: str, tmp_path: Path) -> None:
    """Absolute and `..` paths in a meta file were opened (and trained on)."""
    from realesr_portable.trainer.data import DataError, list_images

    (tmp_path / "gt").mkdir()
    meta = tmp_path / "meta.txt"
    meta.write_text(f"a.png\n{line}\n")
    with pytest.raises(DataError, match=r"line 2: .* is not inside"):
        list_images(tmp_path / "gt", meta)


def test_meta_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    """Notepad's BOM made the first listed file "missing", with an invisible character in its name."""
    from realesr_portable.trainer.data import list_images

    (tmp_path / "gt").mkdir()
    meta = tmp_path / "meta.txt"
    meta.write_bytes("\ufeffa.png\nb.png\n".encode("utf-8"))
    assert [p.name for p in list_images(tmp_path / "gt", meta)] == ["a.png", "b.png"]


@pytest.mark.parametrize("sig, code, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_prepare_stops_at_once_on_an_interrupt(sig: str, code: int, word: str, tmp_path: Path) -> None:
    """With a process pool, SIGINT waited for every queued image and SIGTERM for minutes; workers
    printed their own tracebacks."""
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (600, 600, 3), dtype=np.uint8)).save(src / f"{i}.png")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "realesr_portable", "prepare", str(src), str(out), "--crop-size", "32",
                             "--step", "4", "--workers", "2"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out.is_dir() and any(out.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(getattr(signal, sig))
    started = time.monotonic()
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == code and time.monotonic() - started < 10
    assert err.strip() == f"realesr-portable prepare: error: {word}", err
    assert not list(out.rglob(".*.part"))


def test_preview_output_must_be_named_png(tmp_path: Path, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`preview -o grid.jpg` wrote PNG bytes under a JPEG name."""
    code, line = _preview(["-o", tmp_path / "grid.jpg", "--rows", "1", "--size", "32", photo], capsys)
    assert code == 2 and "the grid is a PNG; name it NAME.png" in line
    assert not (tmp_path / "grid.jpg").exists()
