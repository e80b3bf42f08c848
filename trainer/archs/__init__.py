"""Old import path of the architectures, kept so existing scripts keep working.

The architectures live in `realesr_portable.archs`, one folder per family.
"""
