"""Whole models under bfloat16 autocast on the CPU, one per token mixer: logits within a
stated tolerance of float32.

Each case is SegFormer-B0's widths with one block per stage and the mixer in every block
(deformable attention, as in the ablation study, in the two coarse stages), random
weights (``helpers.randomised``), two 64x64 images. The tolerance, relative L2 error of
the logits <= 3e-2 and largest error <= 4e-2 of the largest logit, is 1.5x the worst
that bf16 rounding gave these models over 8 random initialisations (relative L2 0.9e-2
to 2.0e-2). Deformable attention's offsets are scaled to a tenth of ``randomised``'s:
at its full scale they saturate at 4 cells on noise-like random features, and the
error varied from 1.6e-2 to 1.2e-1 with the initialisation (1.3e-2 to 1.7e-2 at a
tenth). RoPE precision does not show at this level (rounding its angles to bf16 moved
these figures by under 1e-3), so tests/layers/test_bf16_islands.py checks the rotation itself.
"""

import pytest
import torch

from helpers import randomised
from segformer_lab.layers.deformable import OffsetNetwork
from segformer_lab.layers.mixers import TOKEN_MIXERS
from segformer_lab.models import create_model

RELATIVE_L2 = 3e-2
RELATIVE_MAX = 4e-2
CASES = {
    "efficient": {},
    "efficient, rope axial": {"pos_encoding": "axial"},
    "pooled": {"mixer": "pooled"},
    "pooled, rope mixed": {"mixer": "pooled", "pos_encoding": "mixed"},
    "pooling": {"mixer": "pooling"},
    "xca": {"mixer": "xca"},
    "separable": {"mixer": "separable"},
    "deformable": {"deformable_blocks": [(), (), (0,), (0,)]},
    "irmb": {"mixer": "irmb"},
}


def test_every_token_mixer_has_a_case():
    mixers = {fields.get("mixer", "efficient") for fields in CASES.values()}
    mixers |= {"deformable" for fields in CASES.values() if fields.get("deformable_blocks")}
    assert mixers == set(TOKEN_MIXERS)


@pytest.mark.parametrize("case", list(CASES))
def test_logits_under_bf16_autocast_match_float32(case):
    config = create_model("segformer_b0").config.with_stages(depth=1, **CASES[case])
    model = randomised(create_model(config=config).eval())
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, OffsetNetwork):
                module.proj.weight.mul_(0.1)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x).float()
    error = low - reference
    assert (error.norm() / reference.norm()).item() <= RELATIVE_L2
    assert (error.abs().max() / reference.abs().max()).item() <= RELATIVE_MAX
