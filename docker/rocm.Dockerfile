# parity for AMD Instinct GPUs, on AMD's ROCm PyTorch image, whose torch and pytorch-triton-rocm it
# keeps: parity asks torch for a lower bound only, and installs without the cpu extra, whose plain
# triton would replace the ROCm one. Python 3.12 (parity needs 3.11 or later).
# Build from the repository root:  docker build -f docker/rocm.Dockerfile -t parity:rocm .
FROM rocm/pytorch:rocm6.4.1_ubuntu24.04_py3.12_pytorch_release_2.6.0

WORKDIR /opt/parity
COPY pyproject.toml README.md ./
COPY parity ./parity
# amd: amdsmi for telemetry; slurm: submitit for parity submit.
RUN pip install --no-cache-dir './[amd,slurm]'

# Runs go to /work/runs: mount a host folder there to keep them.
WORKDIR /work
ENTRYPOINT ["parity"]
CMD ["devices"]
