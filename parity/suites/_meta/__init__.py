"""Each built-in suite's light metadata: a module per suite, named as the suite, defining META (a
core.model.SuiteMeta) and importing neither torch, triton nor a kernel, so that the command line can
refuse an unknown preset, dtype or implementation, or a size that cannot fit, before the device is
detected (torch's import alone takes 1.5 s or more). The suite module builds its Suite from META.

These modules may be imported before device.detect(): the interpreter switch's guard lets them be.
"""
