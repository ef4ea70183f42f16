"""GEMM kernels: Triton BF16/FP16 (`triton_gemm`), FP8 (`triton_fp8`) and MXFP4 (`triton_mxfp4`),
their PyTorch counterparts (`torch_gemm`), and the quantizers they share (`quant`)."""
