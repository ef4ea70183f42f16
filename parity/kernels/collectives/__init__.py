"""Collectives over torch.distributed (NCCL on CUDA, RCCL on ROCm, gloo on the CPU)."""
