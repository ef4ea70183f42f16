"""An example parity plugin: the saxpy suite (saxpy.py) and an extra stream copy (impls.py)."""
