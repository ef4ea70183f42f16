"""Attention kernels: `triton_attention` (flash attention, forward and backward), `triton_decode`
(split-KV decoding), `torch_attention` (PyTorch SDPA with a forced backend, FlexAttention),
`fp8` (per-tensor quantization) and `reference` (fp32 attention written out)."""
