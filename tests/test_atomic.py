"""The one atomic writer: modes like any user file, all-or-nothing for several files, optional fsync."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from realesr_portable.atomic import write_atomic, write_bytes_atomic, write_files_atomic


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_mode_follows_the_umask(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        write_bytes_atomic(tmp_path / "a.bin", b"data")
        write_atomic(tmp_path / "b.bin", lambda fh: fh.write(b"more"), fsync=True)
    finally:
        os.umask(previous)
    for name in ("a.bin", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "b.bin").read_bytes() == b"more"


def test_several_files_are_all_or_nothing(tmp_path: Path) -> None:
    (tmp_path / "m.param").write_bytes(b"old param")

    def broken(fh) -> None:
        fh.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_files_atomic({tmp_path / "m.param": b"new param", tmp_path / "m.bin": broken, tmp_path / "m.json": b"{}"})
    assert sorted(os.listdir(tmp_path)) == ["m.param"] and (tmp_path / "m.param").read_bytes() == b"old param"

    write_files_atomic({tmp_path / "m.param": b"new param", tmp_path / "m.bin": lambda fh: fh.write(b"w"),
                        tmp_path / "m.json": b"{}"}, fsync=True)
    assert sorted(os.listdir(tmp_path)) == ["m.bin", "m.json", "m.param"]
    assert (tmp_path / "m.param").read_bytes() == b"new param" and (tmp_path / "m.bin").read_bytes() == b"w"
