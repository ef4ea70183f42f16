"""Reading PTX, ptxas reports and AMDGCN: captured snippets of Triton 3.9 output (sm_90a, sm_100a,
gfx942, gfx950) and the facts each must give, including the cases that must not match."""
from __future__ import annotations

import pytest

from parity.harness.measurement import asm_facts as af

WGMMA_BF16 = """
	wgmma.fence.sync.aligned;
	wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {%f1, %f2}, %rd10, %rd11, p, 1, 1, 0, 1;
	wgmma.commit_group.sync.aligned;
"""
WGMMA_FP8 = "\twgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 {%f1}, %rd1, %rd2, p, 1, 1;\n"
TCGEN05_MXF4 = ("\t@%p27 tcgen05.mma.cta_group::1.kind::mxf4.block_scale.block32 [ %r507 + 0 ], %rd78, %rd79, "
                "%r254, [ %r255 + 0 ], [ %r256 + 0 ], %p53;\n")
TCGEN05_F8 = "\t@%p15 tcgen05.mma.cta_group::1.kind::f8f6f4 [ %r393 + 0 ], %rd47, %rd48, %r128, %p14;\n"
TCGEN05_F16 = "\t@%p1 tcgen05.mma.cta_group::1.kind::f16 [ %r1 + 0 ], %rd1, %rd2, %r3, %p2;\n\ttcgen05.commit.cta_group::1;\n"
MMA_SYNC = "\tmma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%f1,%f2,%f3,%f4}, {%r1,%r2}, {%r3}, {%f5};\n"
TMA = "\tcp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%r1], [%rd2, {%r3, %r4}], [%r5];\n"

PTX_SCALAR = """
	@%p1 ld.global.b32 { %r1 }, [ %rd1 + 0 ];
	@%p1 st.global.b32 [ %rd2 + 0 ], { %r2 };
"""
PTX_VECTOR = """
	ld.global.v4.b32 { %r1, %r2, %r3, %r4 }, [ %rd1 + 0 ];
	@%p2 ld.global.L1::evict_last.b16 { %rs1 }, [ %rd3 + 0 ];
	st.global.v4.b32 [ %rd2 + 0 ], { %r5, %r6, %r7, %r8 };
"""
PTX_V2_B64 = "\tld.global.nc.v2.b64 { %rd5, %rd6 }, [ %rd1 + 0 ];\n"
PTX_V8 = "\tld.global.v8.f32 { %f1, %f2, %f3, %f4, %f5, %f6, %f7, %f8 }, [ %rd1 + 0 ];\n"
PTX_CP_ASYNC = "\tcp.async.cg.shared.global [ %r12 + 0 ], [ %rd20 + 0 ], 0x10, %r13;\n\tcp.async.ca.shared.global [ %r1 + 0 ], [ %rd2 + 0 ], 8, %r3;\n"
PTX_SHARED_ONLY = "\tld.shared.v4.b32 { %r1, %r2, %r3, %r4 }, [ %r5 + 0 ];\n\tst.shared.v4.b32 [ %r5 + 0 ], { %r1, %r2, %r3, %r4 };\n"

PTXAS_SPILLS = """ptxas-blackwell info    : (C7511) Potential Performance Loss: wgmma.mma_async instructions are serialized
ptxas-blackwell info    : Compiling entry function 'matmul_kernel' for 'sm_90a'
ptxas-blackwell info    : Function properties for matmul_kernel
    752 bytes stack frame, 1796 bytes spill stores, 1284 bytes spill loads
ptxas-blackwell info    : Used 255 registers, used 1 barriers, 752 bytes cumulative stack size
"""
PTXAS_CLEAN = """ptxas info    : Function properties for _map_kernel
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 30 registers, used 0 barriers
"""

AMD_MFMA_BF16 = "\tv_mfma_f32_16x16x16_bf16 v[0:3], v[102:103], v[18:19], v[0:3]\n"
AMD_MFMA_FP8 = "\tv_mfma_f32_16x16x32_fp8_fp8 v[0:3], v[152:153], v[80:81], v[0:3]\n"
AMD_MFMA_OLD = "\tv_mfma_f32_32x32x8bf16_1k a[0:15], v[2:3], v[4:5], a[0:15]\n"
AMD_F8F6F4_FP8 = "\tv_mfma_f32_16x16x128_f8f6f4 a[104:107], a[32:39], a[16:23], a[104:107]\n"
AMD_SCALE_FP4 = ("\tv_mfma_scale_f32_16x16x128_f8f6f4 v[0:3], a[12:15], v[100:103], v[0:3], v33, v77 "
                 "op_sel:[1,1,0] op_sel_hi:[0,1,0] cbsz:4 blgp:4\n")
AMD_SCALE_FP8 = "\tv_mfma_scale_f32_32x32x64_f8f6f4 v[0:15], v[1:8], v[9:16], v[0:15], v33, v77 op_sel_hi:[0,0,0]\n"
AMD_ACCESS = """
	buffer_load_dwordx4 v[4:7], v1, s[4:7], 0 offen
	buffer_load_ushort v8, v2, s[4:7], 0 offen
	global_store_short v[0:1], v3, off
	scratch_store_dwordx4 off, v[10:13], off offset:48 ; 16-byte Folded Spill
"""
AMD_NARROW = "\tglobal_load_dword v1, v[2:3], off\n\tbuffer_store_short v4, v5, s[0:3], 0 offen\n"
AMD_SPILLS = """; TotalNumSgprs: 32
; NumVgprs: 256
; NumAgprs: 0
; TotalNumVgprs: 256
; ScratchSize: 140
    .sgpr_spill_count: 0
    .vgpr_count:     256
    .vgpr_spill_count: 50
"""
AMD_CLEAN = """; NumVgprs: 40
; NumAgprs: 64
; TotalNumVgprs: 104
; ScratchSize: 0
    .sgpr_spill_count: 0
    .vgpr_spill_count: 0
"""
AMD_SCRATCH_NO_SPILL = "; TotalNumVgprs: 12\n; ScratchSize: 64\n    .vgpr_spill_count: 0\n"


@pytest.mark.parametrize("text, family, fmt", [
    (WGMMA_BF16, "wgmma", "bf16"),
    (WGMMA_FP8, "wgmma", "fp8"),
    (TCGEN05_MXF4, "tcgen05", "fp4"),
    (TCGEN05_F8, "tcgen05", "fp8"),
    (TCGEN05_F16, "tcgen05", "bf16"),
    (MMA_SYNC, "mma", "bf16"),
    (WGMMA_BF16 + TCGEN05_MXF4, "tcgen05", "fp4"),
    (PTX_VECTOR, None, None),
    (TMA, None, None),
])
def test_ptx_mma(text, family, fmt):
    assert af.ptx_mma(text) == (family, fmt)


def test_wgmma_fence_alone_is_not_an_mma():
    assert af.ptx_mma("\twgmma.fence.sync.aligned;\n\twgmma.commit_group.sync.aligned;\n") == (None, None)


@pytest.mark.parametrize("text, family, fmt", [
    (AMD_MFMA_BF16, "mfma", "bf16"),
    (AMD_MFMA_FP8, "mfma", "fp8"),
    (AMD_MFMA_OLD, "mfma", "bf16"),
    (AMD_F8F6F4_FP8, "mfma", "fp8"),
    (AMD_SCALE_FP4, "mfma_scale", "fp4"),
    (AMD_SCALE_FP8, "mfma_scale", "fp8"),
    (AMD_MFMA_BF16 + AMD_SCALE_FP4, "mfma_scale", "fp4"),
    (AMD_ACCESS, None, None),
])
def test_amdgcn_mma(text, family, fmt):
    assert af.amdgcn_mma(text) == (family, fmt)


def test_a_comment_naming_mfma_is_not_an_mfma():
    assert af.amdgcn_mma("; uses v_mfma_f32_16x16x16_bf16 in the loop\n") == (None, None)


@pytest.mark.parametrize("text, width", [
    (PTX_SCALAR, 4),
    (PTX_VECTOR, 16),
    (PTX_V2_B64, 16),
    (PTX_V8, 32),
    (PTX_CP_ASYNC, 16),
    (PTX_SHARED_ONLY, None),
    (PTX_SCALAR + PTX_VECTOR, 16),
    (WGMMA_BF16, None),
])
def test_ptx_vector_bytes(text, width):
    assert af.ptx_vector_bytes(text) == width


@pytest.mark.parametrize("text, width", [
    (AMD_ACCESS, 16),  # the scratch spill is not a global access
    (AMD_NARROW, 4),
    ("\tscratch_store_dwordx4 off, v[10:13], off offset:48\n", None),
    ("\tglobal_load_b128 v[0:3], v4, s[0:1]\n", 16),
])
def test_amdgcn_vector_bytes(text, width):
    assert af.amdgcn_vector_bytes(text) == width


def test_ptxas_report():
    assert af.ptxas_resources(PTXAS_SPILLS) == (255, 1796)
    assert af.ptxas_resources(PTXAS_CLEAN) == (30, 0)
    assert af.ptxas_resources("") == (None, None)


def test_amdgcn_resources():
    assert af.amdgcn_resources(AMD_SPILLS) == (256, 140)
    assert af.amdgcn_resources(AMD_CLEAN) == (104, 0)  # AGPRs count
    assert af.amdgcn_resources(AMD_SCRATCH_NO_SPILL) == (12, 0)  # scratch without spills is no spill
    assert af.amdgcn_resources("") == (None, None)


def test_whole_facts():
    f = af.ptx_facts(WGMMA_FP8 + TMA + PTX_VECTOR, PTXAS_CLEAN)
    assert (f.mma, f.mma_format, f.tma, f.vector_bytes, f.registers, f.spill_bytes) == ("wgmma", "fp8", True, 16, 30, 0)
    f = af.ptx_facts(PTX_SCALAR, PTXAS_SPILLS)
    assert (f.mma, f.tma, f.vector_bytes, f.spill_bytes) == (None, False, 4, 1796)
    g = af.amdgcn_facts(AMD_SCALE_FP4 + AMD_ACCESS + AMD_SPILLS)
    assert (g.mma, g.mma_format, g.tma, g.vector_bytes, g.registers, g.spill_bytes) == ("mfma_scale", "fp4", False, 16, 256, 140)
