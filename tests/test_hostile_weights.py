"""Hostile weight files through `realesr-portable convert` (issue 8, items 9 and 10, complex weights).

A `.pth` is a zip of a pickle and raw storages. Bombs (a pickle of millions of opcodes, a data.pkl
that inflates to hundreds of MB, tensors whose shape claims far more than their storage holds)
must be refused by the bounded look inside, before `torch.load` runs: the tests make `torch.load`
fail loudly if it is reached.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from realesr_portable.convert.cli import main as convert_main
from realesr_portable.convert.pth_guard import MAX_OPCODES, MAX_PICKLE_BYTES, UnsafeWeightsError, check_torch_zip
from realesr_portable.convert.weights_io import WeightsError, load_state_dict


def _saved(tmp_path: Path, obj: object, name: str = "ok.pth") -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _rezip(src: Path, dst: Path, replace: dict[str, bytes], deflate: bool = True) -> Path:
    """Copy a torch.save zip, swapping the members whose names end with a key of `replace`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = next((v for k, v in replace.items() if info.filename.endswith(k)), zin.read(info))
            zout.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
    return dst


def _list_pickle(count: int) -> bytes:
    """{'a': [1, 1, ...]}: one opcode per item, compresses ~1000:1."""
    return b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(" + b"K\x01" * count + b"es."


@pytest.fixture
def no_torch_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def reached(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load was reached: the bounded check let the file through")

    monkeypatch.setattr(torch, "load", reached)


def _convert(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = convert_main(["convert", str(path), "-o", str(tmp_path / "out"), "--no-verify"])
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    return code, err


@pytest.mark.usefixtures("no_torch_load")
def test_pickle_opcode_bomb_is_refused_before_torch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = _rezip(_saved(tmp_path, {"w": torch.zeros(2)}), tmp_path / "bomb.pth",
                  {"data.pkl": _list_pickle(MAX_OPCODES + 10)})
    assert bomb.stat().st_size < 200_000  # small on disk, as in the report
    code, err = _convert(bomb, tmp_path, capsys)
    assert code == 1 and "opcodes" in err and "bomb.pth" in err


@pytest.mark.usefixtures("no_torch_load")
def test_data_pkl_inflating_past_the_limit_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = _rezip(_saved(tmp_path, {"w": torch.zeros(2)}), tmp_path / "inflate.pth",
                  {"data.pkl": _list_pickle(MAX_PICKLE_BYTES // 2 + 1)})
    code, err = _convert(bomb, tmp_path, capsys)
    assert code == 1 and "data.pkl inflates" in err


@pytest.mark.usefixtures("no_torch_load")
def test_zero_stride_tensor_claiming_a_million_channels_is_refused(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = _saved(tmp_path, {"params_ema": {"conv_first.weight": torch.zeros(1).expand(10**6, 64, 3, 3)}}, "zs.pth")
    assert path.stat().st_size < 4000
    code, err = _convert(path, tmp_path, capsys)
    assert code == 1 and "(1000000, 64, 3, 3)" in err and "storage holds" in err


def test_storage_shorter_than_its_claim_is_refused(tmp_path: Path) -> None:
    src = _saved(tmp_path, {"w": torch.ones(64, 3, 3, 3)})
    cut = _rezip(src, tmp_path / "cut.pth", {"/data/0": b"\0" * 16})
    with pytest.raises(UnsafeWeightsError, match="claims 1728 values but holds 4"):
        check_torch_zip(cut)


def test_view_past_the_end_of_its_storage_is_refused(tmp_path: Path) -> None:
    base = torch.arange(10, dtype=torch.float32)
    src = _saved(tmp_path, {"w": base[2:6]})  # offset 2, 4 values of a 10-value storage: fine
    check_torch_zip(src)
    with zipfile.ZipFile(src) as archive:
        name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        data = archive.read(name)
    # the same pickle with the offset moved to 8: values 8..11 of a 10-value storage
    shifted = data.replace(b"K\x02K\x04\x85", b"K\x08K\x04\x85", 1)
    assert shifted != data
    with pytest.raises(UnsafeWeightsError, match="more values than its storage"):
        check_torch_zip(_rezip(src, tmp_path / "shifted.pth", {"data.pkl": shifted}))


def test_missing_storage_member_is_refused(tmp_path: Path) -> None:
    src = _saved(tmp_path, {"w": torch.ones(3)})
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp_path / "nostorage.pth", "w") as zout:
        for info in zin.infolist():
            if "/data/" not in info.filename:
                zout.writestr(info.filename, zin.read(info))
    with pytest.raises(UnsafeWeightsError, match="not in the file"):
        check_torch_zip(tmp_path / "nostorage.pth")


def test_deflated_storage_inflating_past_the_file_is_refused(tmp_path: Path) -> None:
    src = _saved(tmp_path, {"w": torch.ones(3)})
    bomb = _rezip(src, tmp_path / "zeros.pth", {"/data/0": b"\0" * (80 << 20)})
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(UnsafeWeightsError, match="inflate"):
        check_torch_zip(bomb)


@pytest.mark.usefixtures("no_torch_load")
def test_complex_pth_is_refused_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _saved(tmp_path, {"params_ema": {"conv_first.weight": torch.zeros(64, 3, 3, 3, dtype=torch.complex64)}}, "cx.pth")
    code, err = _convert(path, tmp_path, capsys)
    assert code == 1 and "complex" in err


def test_complex_safetensors_is_refused_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "cx.safetensors"
    save_file({"conv_first.weight": torch.zeros(64, 3, 3, 3, dtype=torch.complex64)}, str(path))
    with pytest.raises(WeightsError, match="complex"):
        load_state_dict(path)
    code, err = _convert(path, tmp_path, capsys)
    assert code == 1 and "complex" in err and "warn" not in err.lower()


def test_code_running_pickle_is_neither_run_by_the_dry_run_nor_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path.touch, (Path(marker),))

    src = _saved(tmp_path, {"w": torch.ones(2)})
    evil = _rezip(src, tmp_path / "evil.pth", {"data.pkl": pickle.dumps({"w": Evil()}, protocol=2)})
    check_torch_zip(evil)  # structure is bounded; what it may reference is torch's restricted unpickler's call
    with pytest.raises(WeightsError, match="refused"):
        load_state_dict(evil)
    assert not marker.exists()


def test_real_checkpoints_pass_the_check(tmp_path: Path) -> None:
    """No false alarm: nested EMA weights, shared storages (views), fp16, an optimizer-like dict, and
    the pre-1.6 (non-zip) format all still load."""
    base = torch.randn(8, 4, 3, 3)
    state = {"params_ema": {"a.weight": base, "a.bias": torch.randn(8).half(), "tied": base[2:4]},
             "optimizer": {"step": 10, "lr": [1e-4, 2e-4]}, "iter": 5}
    zipped = _saved(tmp_path, state)
    check_torch_zip(zipped)
    assert load_state_dict(zipped)["tied"].shape == (2, 4, 3, 3)
    legacy = tmp_path / "legacy.pth"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(legacy)
    assert set(load_state_dict(legacy)) == {"a.weight", "a.bias", "tied"}


def test_legacy_format_opcode_bomb_is_refused(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy_bomb.pth"
    buf = io.BytesIO()
    for part in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001}):
        pickle.dump(part, buf, protocol=2)
    buf.write(_list_pickle(MAX_OPCODES + 10))
    legacy.write_bytes(buf.getvalue())
    with pytest.raises(WeightsError, match="opcodes"):
        load_state_dict(legacy)


def test_garbage_and_mutated_legacy_pickles_fail_with_one_line(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Bytes that are no zip are read as a pre-1.6 pickle; the restricted unpickler then raises
    KeyError, IndexError or struct.error on garbage (b'hello world' gave "internal error: KeyError: 101")."""
    import random

    path = tmp_path / "t.pth"
    path.write_bytes(b"hello world")
    code, err = _convert(path, tmp_path, capsys)
    assert code == 1 and "internal error" not in err and "not a PyTorch weights file" in err
    legacy = io.BytesIO()
    torch.save({"a.weight": torch.zeros(2, 3)}, legacy, _use_new_zipfile_serialization=False)
    rng = random.Random(0)
    for case in range(300):
        data = bytearray(legacy.getvalue())
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.getrandbits(8)
        path.write_bytes(bytes(data[: rng.randint(1, len(data))]) if case % 2 else rng.randbytes(rng.randint(1, 64)))
        try:
            load_state_dict(path)
        except WeightsError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize("kind, reason", [
    ("png", "not a PyTorch weights file (neither a torch.save archive nor a pickle)"),
    ("text", "not a PyTorch weights file (neither a torch.save archive nor a pickle)"),
    ("protocol5", "refused: the pickle uses opcode 0x95 (protocol 4 or newer)"),
])
def test_files_that_are_no_torch_save_output_say_what_they_are(kind: str, reason: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A PNG given as weights was "refused: the pickle references code or classes" (it is no
    pickle at all); pickle.dump's protocol-5 framing was called code too."""
    path = tmp_path / f"{kind}.pth"
    if kind == "png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    elif kind == "text":
        path.write_text("conv.weight: 1, 2, 3\n")
    else:
        path.write_bytes(pickle.dumps({"conv.weight": [1.0, 2.0]}, protocol=5))
    code, line = _convert(path, tmp_path, capsys)
    assert code == 1 and line.startswith(f"realesr-portable convert: error: {path}: {reason}"), line


@pytest.mark.parametrize("kind, reason", [
    ("sparse", "entry 'w' is a sparse_coo tensor; save dense weights"),  # was a 6,615-character internal error
    ("meta", "entry 'w' is a meta tensor: it holds no values"),  # was "internal error: ... meta tensors"
    ("int8", "entry 'w' holds int8 values: quantized weights are not supported"),  # converted into garbage, exit 0
    ("bool", "entry 'w' holds bool values: quantized weights are not supported"),
    ("qint8", "its tensors use torch.QInt8Storage, which is not supported"),  # message cut at "<class '...._Opaq"
])
def test_weights_that_are_not_plain_float_tensors_are_named(kind: str, reason: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import save_file

    dense = torch.randn(4, 4)
    if kind in ("int8", "bool"):
        path = tmp_path / "w.safetensors"
        save_file({"w": dense.to(torch.int8 if kind == "int8" else torch.bool)}, str(path))
    else:
        value = {"sparse": dense.to_sparse(), "meta": torch.empty(4, 4, device="meta"),
                 "qint8": torch.quantize_per_tensor(dense, 0.1, 0, torch.qint8)}[kind]
        path = tmp_path / "w.pth"
        torch.save({"w": value}, path)
    with pytest.raises(WeightsError) as caught:
        load_state_dict(path)
    assert reason in str(caught.value)
    code, line = _convert(path, tmp_path, capsys)
    assert code == 1 and reason in line and len(line) < 400, line


def test_an_extra_key_is_named_in_the_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The refusal stopped at "Error(s) in loading state_dict for SRVGGNetCompact:" and never
    named the key that did not fit."""
    from export_support import small_model, srvgg_info

    state = {**small_model(srvgg_info(2)).state_dict(), "extra.weight": torch.zeros(3)}
    path = tmp_path / "extra.pth"
    torch.save(state, path)
    code, line = _convert(path, tmp_path, capsys)
    assert code == 1 and 'Unexpected key(s) in state_dict: "extra.weight"' in line, line


@pytest.mark.parametrize("case, fragment", [
    ("dn alone", "--dn and --dn-weights go together"),  # exit 1 before
    ("name with a separator", "is not a plain file name"),  # exit 1 before
    ("name with a newline", "is not a plain file name"),  # made files with a newline in their names
    ("name too long", "bytes long; at most 200"),  # failed after the work, naming the temporary file
    ("tile pad", "--tile-pad 2000: expected 0..1024"),  # failed after the whole conversion
    ("output is a file", "not a folder"),  # "File exists", after the work
    ("licence escape", "--license: printable text"),  # `models` sent the escape to the terminal
    ("pth in the way", "something that is not a file is in the way"),  # three of four files were written
])
def test_convert_refuses_impossible_options_before_any_work(case: str, fragment: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from realesr_portable.convert import api

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the conversion started")

    monkeypatch.setattr(api, "_load", never)
    out = tmp_path / "out"
    args = {"dn alone": ["--dn", "0.3"], "name with a separator": ["--name", "../evil"],
            "name with a newline": ["--name", "a\nb"], "name too long": ["--name", "n" * 300],
            "tile pad": ["--tile-pad", "2000"], "licence escape": ["--license", "\x1b]0;pwned\x07MIT"],
            "output is a file": [], "pth in the way": []}[case]
    if case == "output is a file":
        out.write_text("a file")
    if case == "pth in the way":
        (out / "w.pth").mkdir(parents=True)
    code = convert_main(["convert", str(tmp_path / "w.pth"), "-o", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
