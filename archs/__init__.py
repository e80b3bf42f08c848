"""Architectures, one folder per family: torch module, detection, ncnn writer and matcher, receptive field.

Imports torch: the runtime (`realesr_portable` outside convert/, trainer/, archs/) never imports
this package. The families the project knows are listed in `families.FAMILIES`.
"""
