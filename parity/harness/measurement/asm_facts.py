"""What a compiled Triton kernel is made of, read from its PTX (NVIDIA) or AMDGCN (AMD) text.

Facts, each from the instructions rather than from what the kernel meant to do:

- `mma`: the matrix instruction family: `tcgen05` (Blackwell, `tcgen05.mma`), `wgmma` (Hopper,
  `wgmma.mma_async`), `mma` (Ampere-style `mma.sync`), `mfma_scale` (CDNA 4's block-scaled
  `v_mfma_scale_*`), `mfma` (`v_mfma_*`), or None where the kernel has no matrix instruction.
- `mma_format`: the narrowest operand type those instructions take: "fp4" (MX/NV FP4 kinds of
  tcgen05, FP4 operands of an F8F6F4 MFMA), "fp6", "fp8", "bf16", "fp16", "tf32", "fp32". tcgen05's
  `kind::f16` takes BF16 or FP16 (the type is in the instruction descriptor, not the text): it
  reads "bf16"; `kind::f8f6f4` reads "fp8" for the same reason.
- `tma`: a tensor-memory-accelerator copy (`cp.async.bulk.tensor`) anywhere in the kernel.
- `vector_bytes`: the widest global load or store one lane issues (`ld.global.v4.b32` is 16 bytes,
  `buffer_load_dwordx4` 16, `global_store_short` 2); `cp.async` copies count by their size.
- `registers`, `spill_bytes`: from ptxas's `-v` report on NVIDIA ("Used 255 registers", "N bytes
  spill stores"); from the AMDGCN metadata on AMD (`TotalNumVgprs`, `ScratchSize` when VGPRs spill).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Formats from narrowest to widest: a kernel's `mma_format` is the first one its instructions take.
FORMATS = ("fp4", "fp6", "fp8", "bf16", "fp16", "tf32", "fp32")

# PTX type suffixes and tcgen05 kinds -> format.
_PTX_TYPES = {"e2m1": "fp4", "e4m3": "fp8", "e5m2": "fp8", "bf16": "bf16", "f16": "fp16", "tf32": "tf32",
              "f32": "fp32"}
_TCGEN05_KINDS = {"mxf4": "fp4", "mxf4nvf4": "fp4", "mxf8f6f4": "fp8", "f8f6f4": "fp8", "f16": "bf16",
                  "tf32": "tf32", "i8": None}
# AMD MFMA operand suffixes -> format (v_mfma_f32_16x16x32_bf16, v_mfma_f32_32x32x16_fp8_fp8, ...).
_MFMA_TYPES = {"bf16": "bf16", "f16": "fp16", "fp8": "fp8", "bf8": "fp8", "xf32": "tf32", "f32": "fp32"}
_F8F6F4 = {0: "fp8", 1: "fp8", 2: "fp6", 3: "fp6", 4: "fp4"}
_AMD_MFMA = re.compile(r"^\s*(v_mfma_\w+.*)$", re.MULTILINE)

_PTX_ACCESS = re.compile(r"^\s*(?:@!?%p\d+\s+)?(ld|st)\.global((?:\.[\w:]+)*)", re.MULTILINE)
_PTX_CP_ASYNC = re.compile(r"^\s*(?:@!?%p\d+\s+)?cp\.async\.c[ag]\.shared\.global[^,]*,[^,]*,\s*(0x[0-9a-fA-F]+|\d+)",
                           re.MULTILINE)
_PTX_BITS = re.compile(r"\.[bfus](8|16|32|64|128)\b")
_PTX_VEC = re.compile(r"\.v(\d+)\b")
_AMD_ACCESS = re.compile(r"^\s*(?:global|buffer|flat)_(?:load|store)_(?:lds_)?(\w+)", re.MULTILINE)
_AMD_WIDTHS = {"byte": 1, "ubyte": 1, "sbyte": 1, "short": 2, "ushort": 2, "sshort": 2, "dword": 4,
               "dwordx2": 8, "dwordx3": 12, "dwordx4": 16, "b8": 1, "u8": 1, "i8": 1, "b16": 2, "u16": 2,
               "i16": 2, "b32": 4, "b64": 8, "b96": 12, "b128": 16}


@dataclass(frozen=True)
class AsmFacts:
    mma: str | None
    mma_format: str | None
    tma: bool
    vector_bytes: int | None
    registers: int | None
    spill_bytes: int | None


def _narrowest(formats) -> str | None:
    found = [f for f in formats if f]
    return min(found, key=FORMATS.index) if found else None


def ptx_mma(ptx: str) -> tuple[str | None, str | None]:
    """(family, format) of the matrix instructions in PTX text."""
    kinds = re.findall(r"\btcgen05\.mma[\w.:]*?\.kind::(\w+)", ptx)
    if kinds or re.search(r"\btcgen05\.mma\b", ptx):
        return "tcgen05", _narrowest(_TCGEN05_KINDS.get(k) for k in kinds)
    wgmma = re.findall(r"\bwgmma\.mma_async(?:\.sp)?\.sync\.aligned\.m\d+n\d+k\d+((?:\.\w+)+)", ptx)
    if wgmma:
        return "wgmma", _narrowest(_PTX_TYPES.get(t) for s in wgmma for t in s.split(".")[2:4])
    mma = re.findall(r"\bmma\.sync\.aligned\.m\d+n\d+k\d+((?:\.[\w:]+)+)", ptx)
    if mma:
        return "mma", _narrowest(_PTX_TYPES.get(t) for s in mma for t in s.split(".") if t in _PTX_TYPES
                                 and t != "f32") or "fp32"
    return None, None


def amdgcn_mma(asm: str) -> tuple[str | None, str | None]:
    """(family, format) of the MFMA instructions in AMDGCN text."""
    scaled, formats = False, []
    for line in _AMD_MFMA.findall(asm):
        tokens = line.split()[0].split("_")
        scaled = scaled or tokens[2] == "scale"
        if "f8f6f4" in tokens:
            # CDNA 4's F8F6F4 MFMAs take their operand types from the cbsz (A) and blgp (B) fields:
            # 0/1 FP8/BF8, 2/3 FP6/BF6, 4 FP4 (AMD CDNA 4 ISA, V_MFMA_*_F8F6F4); absent means 0.
            fields = [int(v) for v in re.findall(r"\b(?:cbsz|blgp):(\d)", line)] or [0]
            formats.append(_F8F6F4[min(fields, key=lambda v: FORMATS.index(_F8F6F4.get(v, "fp8")))])
        else:
            # v_mfma_f32_16x16x32_bf16, and the older v_mfma_f32_32x32x8bf16_1k (type after the shape)
            formats += [_MFMA_TYPES[x] for t in tokens[3:] for x in [re.sub(r"^\d+x\d+x\d+", "", t)]
                        if x in _MFMA_TYPES]
    if not _AMD_MFMA.search(asm):
        return None, None
    return ("mfma_scale" if scaled else "mfma"), _narrowest(formats)


def ptx_vector_bytes(ptx: str) -> int | None:
    widest = None
    for _, suffix in _PTX_ACCESS.findall(ptx):
        bits = _PTX_BITS.findall(suffix)
        vec = _PTX_VEC.findall(suffix)
        if not bits:
            continue
        size = int(bits[-1]) // 8 * (int(vec[-1]) if vec else 1)
        widest = size if widest is None else max(widest, size)
    for text in _PTX_CP_ASYNC.findall(ptx):
        size = int(text, 0)
        widest = size if widest is None else max(widest, size)
    return widest


def amdgcn_vector_bytes(asm: str) -> int | None:
    sizes = [_AMD_WIDTHS[w] for w in _AMD_ACCESS.findall(asm) if w in _AMD_WIDTHS]
    return max(sizes) if sizes else None


def ptxas_resources(log: str) -> tuple[int | None, int | None]:
    """(registers, spill store bytes) from ptxas -v output; None where the log does not say."""
    regs = re.findall(r"Used (\d+) registers", log)
    spills = re.findall(r"(\d+) bytes spill stores", log)
    return (max(map(int, regs)) if regs else None, max(map(int, spills)) if spills else None)


def amdgcn_resources(asm: str) -> tuple[int | None, int | None]:
    """(VGPRs, spilled scratch bytes per lane) from the AMDGCN metadata: VGPRs include AGPRs; spill
    bytes are the kernel's scratch size where VGPRs spill (SGPRs spill to VGPR lanes, not memory)."""
    def last(pattern):
        found = re.findall(pattern, asm)
        return int(found[-1]) if found else None

    vgprs = last(r";\s*TotalNumVgprs:\s*(\d+)") or last(r"\.vgpr_count:\s*(\d+)") or last(r";\s*NumVgprs:\s*(\d+)")
    vgpr_spills = last(r"\.vgpr_spill_count:\s*(\d+)")
    scratch = last(r";\s*ScratchSize:\s*(\d+)") or last(r"\.private_segment_fixed_size:\s*(\d+)") or 0
    if vgpr_spills is None:
        return vgprs, None
    return vgprs, scratch if vgpr_spills > 0 else 0


def ptx_facts(ptx: str, ptxas_log: str) -> AsmFacts:
    mma, fmt = ptx_mma(ptx)
    regs, spills = ptxas_resources(ptxas_log)
    return AsmFacts(mma, fmt, bool(re.search(r"\bcp\.async\.bulk\.tensor\b", ptx)), ptx_vector_bytes(ptx), regs, spills)


def amdgcn_facts(asm: str) -> AsmFacts:
    mma, fmt = amdgcn_mma(asm)
    regs, spills = amdgcn_resources(asm)
    return AsmFacts(mma, fmt, False, amdgcn_vector_bytes(asm), regs, spills)
