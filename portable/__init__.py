"""realesr-portable runtime: Real-ESRGAN models through ncnn, on Vulkan or the CPU.

Imports numpy, Pillow, ncnn and typer only: never torch, never the convert/trainer subpackages.
"""
