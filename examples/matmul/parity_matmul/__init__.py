"""An autotuned Triton matmul of a user's own, with NVIDIA and AMD configs of their own (Launcher)."""
