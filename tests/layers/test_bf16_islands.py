"""Float32 islands under bfloat16 autocast: where a position becomes a number (RoPE
angles, deformable sampling coordinates) it must not be rounded to bfloat16, whose steps
are 0.5 at 64..128 (a RoPE angle) and 1/128 near 1 (a normalised sampling coordinate).

Each check compares the layer under ``torch.autocast("cpu", dtype=torch.bfloat16)`` with
the same layer in float64 on the same (bf16-valued) inputs: the only error allowed is
rounding the output to bfloat16, which moves a value by at most 2**-8 of itself, so the
tolerance is 2**-8 of the largest reference output. A test proves the RoPE check can
fail: with the angles rounded to bfloat16 the error is tens of times the tolerance.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from segformer_lab.layers.deformable import DeformableAttention
from segformer_lab.layers.rope import build_rope

TOLERANCE = 2**-8  # of the largest reference output
GRID = (128, 128)  # stage 1 of a 512x512 input: positions up to 127


def rope_error(kind: str, bf16_angles: bool = False) -> float:
    """Largest error of RoPE-rotated queries and keys under bf16 autocast, relative to the
    largest reference output, on a 128x128 query grid with keys on 8x8 windows. ``bf16_angles``
    rounds the angles of the module under test (not of the reference) to bfloat16."""
    rope = build_rope(kind, head_dim=32, num_heads=2)
    reference = copy.deepcopy(rope).double()  # before any call: its own table cache
    if bf16_angles:
        angles = rope.angles
        rope.angles = lambda coords: angles(coords).bfloat16().float()

    def reduce(t):
        return F.avg_pool2d(t, 8, 8)

    generator = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, GRID[0] * GRID[1], 32, generator=generator).bfloat16()
    k = torch.randn(1, 2, (GRID[0] // 8) * (GRID[1] // 8), 32, generator=generator).bfloat16()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        q_rot, k_rot = rope(q, k, GRID, reduce)
    with torch.no_grad():
        q_ref, k_ref = reference(q.double(), k.double(), GRID, reduce)
    assert q_rot.dtype == k_rot.dtype == torch.bfloat16
    scale = max(q_ref.abs().max().item(), k_ref.abs().max().item())
    return max((q_rot.double() - q_ref).abs().max().item(), (k_rot.double() - k_ref).abs().max().item()) / scale


@pytest.mark.parametrize("kind", ["axial", "mixed"])
def test_rope_rotation_under_bf16_autocast_is_float32_faithful(kind):
    assert rope_error(kind) <= TOLERANCE


@pytest.mark.parametrize("kind", ["axial", "mixed"])
def test_the_rope_check_fails_when_angles_are_bf16(kind):
    """The mistake the check exists for: the same angles, rounded to bfloat16."""
    assert rope_error(kind, bf16_angles=True) > 10 * TOLERANCE


def test_deformable_sampling_under_bf16_autocast_keeps_float32_positions():
    """Sampling a 128-wide map at float32 positions: bilinear samples of the bf16 map at
    exactly those positions, up to rounding the result (a bf16 grid moves them by up to
    half a pixel)."""
    attention = DeformableAttention(32, 2)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, *GRID, 32, generator=generator).bfloat16()
    positions = torch.rand(1, 1, 16, 16, 2, generator=generator) * (GRID[0] - 1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        samples = attention.sample(x, positions)
    with torch.no_grad():
        reference = attention.sample(x.double(), positions.double())
    assert samples.dtype == torch.bfloat16 and samples.shape == (1, 16, 16, 32)
    assert (samples.double() - reference).abs().max().item() <= TOLERANCE * reference.abs().max().item()
