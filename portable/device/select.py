"""Which device runs the net: a Vulkan GPU through ncnn, or ncnn's CPU path.

A software Vulkan device (lavapipe/llvmpipe/SwiftShader) is ~20x slower than ncnn's own CPU path
(measured: docs/architecture.md), so automatic selection never picks one; `-g N` can still choose it explicitly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import UserError
from .quiet import quiet_stderr

CPU_INDEX = -1
# ncnn GpuInfo.type(): 0 discrete, 1 integrated, 2 virtual, 3 cpu (software rasteriser).
_KINDS = {0: "discrete", 1: "integrated", 2: "virtual", 3: "software"}
_SOFTWARE_NAMES = ("llvmpipe", "lavapipe", "swiftshader", "softpipe")


class DeviceError(UserError, ValueError):
    """A device was requested that does not exist."""


@dataclass(frozen=True)
class Device:
    """One place to run the net. `index` is the ncnn Vulkan index, or -1 for the CPU."""

    index: int
    name: str
    kind: str  # "cpu", "discrete", "integrated", "virtual" or "software"
    heap_budget_mb: int  # Vulkan heap budget; on the CPU the currently available RAM

    @property
    def is_gpu(self) -> bool:
        return self.index != CPU_INDEX

    @property
    def is_software(self) -> bool:
        return self.kind == "software"

    def describe(self) -> str:
        if not self.is_gpu:
            return f"CPU ({os.cpu_count() or 1} threads, ncnn)"
        soft = ", software Vulkan" if self.is_software else ""
        return f"Vulkan GPU {self.index}: {self.name} ({self.kind}{soft}, heap budget {self.heap_budget_mb} MiB)"


def available_ram_mb() -> int:
    """MemAvailable from /proc/meminfo (Linux), else free physical pages; a guess of 2 GiB otherwise."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1 << 20))
    except (ValueError, OSError, AttributeError):
        return 2048


def cpu_device() -> Device:
    return Device(CPU_INDEX, "CPU", "cpu", available_ram_mb())


def vulkan_devices() -> list[Device]:
    """Enumerate ncnn's Vulkan devices; an absent loader or driver simply yields none."""
    import ncnn

    with quiet_stderr():
        count = ncnn.get_gpu_count()
    devices = []
    for index in range(count):
        info = ncnn.get_gpu_info(index)
        name = str(info.device_name())
        kind = _KINDS.get(int(info.type()), "unknown")
        if any(word in name.lower() for word in _SOFTWARE_NAMES):
            kind = "software"
        budget = int(ncnn.get_gpu_device(index).get_heap_budget())
        if kind == "software":  # its "device memory" is host RAM; lavapipe reports a 1 GiB heap
            budget = max(budget, available_ram_mb())
        devices.append(Device(index, name, kind, budget))
    return devices


def auto_device() -> Device:
    """The fastest hardware Vulkan device (discrete before integrated), else the CPU."""
    rank = {"discrete": 0, "integrated": 1, "virtual": 2, "unknown": 3}
    hardware = [d for d in vulkan_devices() if not d.is_software]
    if not hardware:
        return cpu_device()
    return min(hardware, key=lambda d: (rank.get(d.kind, 9), -d.heap_budget_mb, d.index))


def parse_gpu_option(text: str | int | None) -> list[int] | None:
    """`None`/`auto` -> automatic; `-1` -> CPU; `0` or `0,1` -> those Vulkan devices."""
    if text is None:
        return None
    text = str(text).strip().lower()
    if text in ("", "auto"):
        return None
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DeviceError(f"-g {text!r}: expected auto, -1 (CPU), a GPU index or a list like 0,1") from None
    if not ids or len(set(ids)) != len(ids):
        raise DeviceError(f"-g {text!r}: empty or repeated device list")
    if CPU_INDEX in ids and len(ids) > 1:
        raise DeviceError(f"-g {text!r}: -1 (CPU) cannot be combined with GPUs")
    return ids


def select_devices(gpu: str | int | None) -> list[Device]:
    """Devices for a `-g` value; unknown indexes are refused with the list of what exists."""
    ids = parse_gpu_option(gpu)
    if ids is None:
        return [auto_device()]
    if ids == [CPU_INDEX]:
        return [cpu_device()]
    present = {d.index: d for d in vulkan_devices()}
    missing = [i for i in ids if i not in present]
    if missing:
        have = ", ".join(f"{d.index}={d.name}" for d in present.values()) or "none"
        raise DeviceError(f"-g: no Vulkan device {missing[0]} (available: {have}; -1 is the CPU)")
    return [present[i] for i in ids]
