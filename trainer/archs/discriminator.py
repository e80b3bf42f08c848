"""Moved to `realesr_portable.archs.unet_discriminator.module`; this name stays for old imports."""

from ...archs.unet_discriminator.module import UNetDiscriminatorSN

__all__ = ["UNetDiscriminatorSN"]
