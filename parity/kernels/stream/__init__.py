"""HBM streaming kernels: `triton_stream` (Triton) and `torch_stream` (PyTorch), same operations."""
