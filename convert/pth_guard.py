"""Bound the work of reading a `.pth` before `torch.load` touches it.

Why: `torch.load(weights_only=True)` never runs code, but it trusts sizes. A 146 KB file whose
`data.pkl` inflates to millions of opcodes kept it busy for minutes and gigabytes before it
refused; a 2.8 KB file with zero-stride tensors claiming 10^6 channels made it (and ncnn after
it) allocate gigabytes and crash. Here the zip is looked into first: the pickle's size and opcode
count are bounded, and each tensor's shape, stride and offset are checked against the real size
of its storage in the zip, with a dry-run unpickler that imports and calls nothing. Only then
is torch's restricted unpickler run.

A `.pth` written by `torch.save` is a zip: `<folder>/data.pkl` (the pickle) and `<folder>/data/<key>`
(one raw storage per key), referenced from the pickle as persistent ids
`('storage', <storage class>, key, location, numel)`.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import zipfile
from collections import OrderedDict
from pathlib import Path

MAX_PICKLE_BYTES = 32 << 20  # x4plus's data.pkl is ~50 KB; training checkpoints a few hundred KB
MAX_OPCODES = 1_000_000  # ~30 per tensor: room for 30,000 tensors
MAX_DIMS = 8
MAX_INFLATION = 2  # storages are stored uncompressed by torch.save: members cannot outgrow the file
_HEADROOM = 64 << 20
_ITEMSIZE = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2,
             "Char": 1, "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16}


class UnsafeWeightsError(ValueError):
    """The file describes more work or memory than it holds (one-line message)."""


class _Opaque:
    """Stands in for any global the dry run meets: builds nothing, runs nothing, accepts anything."""

    def __new__(cls, *args: object, **kwargs: object) -> "_Opaque":
        return super().__new__(cls)

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __call__(self, *args: object, **kwargs: object) -> "_Opaque":
        return _Opaque()

    def __setstate__(self, state: object) -> None:
        pass

    def __setitem__(self, key: object, value: object) -> None:
        pass

    def append(self, item: object) -> None:
        pass

    def extend(self, items: object) -> None:
        pass


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name
        self.itemsize = _ITEMSIZE[name]


class _UnknownStorage:
    """A torch storage class outside `_ITEMSIZE` (quantized ones), kept by name for the message."""

    def __init__(self, name: str) -> None:
        self.name = name


class _Storage:
    def __init__(self, kind: _StorageType, numel: int) -> None:
        self.kind, self.numel = kind, numel


def _check_tensor(storage: object, offset: object, size: object, stride: object, *rest: object) -> _Opaque:
    """The dry run's `_rebuild_tensor_v2`: the view must lie inside the storage the zip holds."""
    if not isinstance(storage, _Storage):
        raise UnsafeWeightsError("a tensor without a storage from the file")
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride) <= MAX_DIMS
            and all(type(v) is int and v >= 0 for v in (offset, *size, *stride))):
        raise UnsafeWeightsError(f"a tensor with an invalid shape {size!r:.60} / stride {stride!r:.60}")
    if storage.kind.name.startswith("Complex"):
        raise UnsafeWeightsError("complex-valued weights; a super-resolution network has real weights")
    numel = math.prod(size)
    if numel == 0:
        return _Opaque()
    extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1  # type: ignore[operator]
    if numel > storage.numel or extent > storage.numel:
        raise UnsafeWeightsError(f"a tensor of shape {tuple(size)} (stride {tuple(stride)}) claims more values "
                                 f"than its storage holds ({storage.numel})")
    return _Opaque()


class _DryRun(pickle.Unpickler):
    """Unpickles the structure only; every global becomes a stand-in, storages come from the zip."""

    def __init__(self, data: bytes, members: dict[str, int]) -> None:
        super().__init__(io.BytesIO(data))
        self._members = members

    def find_class(self, module: str, name: str) -> object:
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _check_tensor
        if module == "torch" and name.endswith("Storage") and name[: -len("Storage")] in _ITEMSIZE:
            return _StorageType(name[: -len("Storage")])
        if module == "torch" and name.endswith("Storage"):  # QInt8Storage, ...: said by name below
            return _UnknownStorage(name)
        return _Opaque

    def persistent_load(self, pid: object) -> object:
        if isinstance(pid, tuple) and len(pid) == 5 and isinstance(pid[1], _UnknownStorage):
            raise UnsafeWeightsError(f"its tensors use torch.{pid[1].name}, which is not supported "
                                     "(quantized weights?); save float weights")
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise UnsafeWeightsError("an unsupported storage reference (not a torch.save of plain tensors)")
        kind, key, numel = pid[1], str(pid[2]), pid[4]
        stored = self._members.get(key)
        if stored is None:
            raise UnsafeWeightsError(f"storage {key[:20]!r} is not in the file")
        if type(numel) is not int or numel < 0 or numel * kind.itemsize > stored:
            raise UnsafeWeightsError(f"storage {key[:20]!r} claims {numel} values but holds {stored // kind.itemsize}")
        return _Storage(kind, numel)


def _walk_opcodes(stream: io.BytesIO, count: int = 0) -> int:
    """Walk one pickle's opcodes without running them; return the running count, refuse more
    than MAX_OPCODES in all. Broken pickles raise whatever pickletools raises."""
    for _ in pickletools.genops(stream):
        count += 1
        if count > MAX_OPCODES:
            raise UnsafeWeightsError(f"the pickle has more than {MAX_OPCODES} opcodes (a pickle bomb?)")
    return count


def _count_opcodes(data: bytes) -> None:
    """Walk the opcodes without running them; refuse more than MAX_OPCODES (and broken pickles)."""
    try:
        _walk_opcodes(io.BytesIO(data))
    except UnsafeWeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - genops raises ValueError and others on garbage
        raise UnsafeWeightsError(f"not a readable pickle ({str(exc)[:80]})") from None


def check_torch_zip(path: Path) -> None:
    """Refuse a zip-format `.pth` that would make torch.load do unbounded work. Non-zip: see below."""
    size = path.stat().st_size
    if not zipfile.is_zipfile(path):
        check_legacy_pickle(path)
        return
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            pkl = [i for i in infos if i.filename.endswith("data.pkl") and i.filename.count("/") == 1]
            if len(pkl) != 1:
                raise UnsafeWeightsError("not a torch.save archive (no single <folder>/data.pkl)")
            folder = pkl[0].filename.split("/")[0]
            if pkl[0].file_size > MAX_PICKLE_BYTES:
                raise UnsafeWeightsError(f"data.pkl inflates to {pkl[0].file_size} bytes (limit {MAX_PICKLE_BYTES})")
            if sum(i.file_size for i in infos) > MAX_INFLATION * size + _HEADROOM:
                raise UnsafeWeightsError(f"its members inflate to {sum(i.file_size for i in infos)} bytes from a {size}-byte file")
            members = {i.filename[len(folder) + 6 :]: i.file_size for i in infos if i.filename.startswith(f"{folder}/data/")}
            with archive.open(pkl[0]) as fh:
                data = fh.read(MAX_PICKLE_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        if isinstance(exc, UnsafeWeightsError):
            raise
        raise UnsafeWeightsError(f"a damaged zip ({str(exc)[:80]})") from None
    if len(data) > MAX_PICKLE_BYTES:
        raise UnsafeWeightsError(f"data.pkl is larger than {MAX_PICKLE_BYTES} bytes")
    _count_opcodes(data)
    try:
        _DryRun(data, members).load()
    except UnsafeWeightsError:
        raise
    except RecursionError:
        raise UnsafeWeightsError("the pickle nests too deeply") from None
    except Exception as exc:  # noqa: BLE001 - a malformed pickle fails in many ways; torch would too
        raise UnsafeWeightsError(f"not a readable pickle ({type(exc).__name__}: {str(exc)[:80]})") from None


def check_legacy_pickle(path: Path) -> None:
    """Pre-zip `.pth` files (torch < 1.6, early ESRGAN releases) are pickles back to back, storages
    after them: bound the opcode count of the pickles (their storages are sized by torch itself).
    Anything else that is no zip (a truncated one, say) is left to torch's reader to name."""
    with open(path, "rb") as fh:
        head = fh.read(MAX_PICKLE_BYTES)
    stream = io.BytesIO(head)
    count = 0
    try:
        for _ in range(4):  # magic number, protocol version, system info, the object itself
            count = _walk_opcodes(stream, count)
    except UnsafeWeightsError:
        raise
    except Exception:  # noqa: BLE001, S110 - not a pickle (a truncated zip, say): torch's reader says which
        return
