# parity for NVIDIA GPUs, on NVIDIA's NGC PyTorch image, whose torch and triton it keeps: parity
# asks torch for a lower bound only, and installs without the cpu extra. Python 3.12 (parity
# needs 3.11 or later). Since 25.03 the image pins its Python packages in /etc/pip/constraint.txt,
# which this install respects.
# Build from the repository root:  docker build -f docker/cuda.Dockerfile -t parity:cuda .
FROM nvcr.io/nvidia/pytorch:25.10-py3

WORKDIR /opt/parity
COPY pyproject.toml README.md ./
COPY parity ./parity
# slurm: submitit for parity submit. NVML's bindings (nvidia-ml-py) are a plain dependency.
RUN pip install --no-cache-dir './[slurm]'

# Runs go to /work/runs: mount a host folder there to keep them.
WORKDIR /work
ENTRYPOINT ["parity"]
CMD ["devices"]
