"""Parameters and multiply-accumulates (MACs) of models (``segformer-lab profile``).

Counting follows ``torch.utils.flop_counter.FlopCounterMode``: matrix products and
convolutions at 2 FLOPs per multiply-add; norms, activations, softmax and resizes are
free. MACs are its FLOPs / 2. Each model is counted twice: as *published* (every
folding off, ``config.published()``: the all-MLP decoder's ``linear_fuse`` and
Mix-CFN's BatchNorms run literally) and as *executed* (the model as configured, by
default with ``linear_fuse`` and the BatchNorms folded away).
docs/profiling.md relates these figures to the paper's and to thop's.
"""

from __future__ import annotations

import glob
from dataclasses import asdict, dataclass

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from ..models import ModelConfig, SegmentationModel, get_config, list_models
from ..models.parameters import parameter_counts

# The attention kernel that F.scaled_dot_product_attention runs on CPU. FlopCounterMode
# (torch 2.13) has formulas for the CUDA kernels only, so without one of ours it would
# count attention as free.
SDPA_CPU = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of ``softmax(Q K^T) V``: its two batched matrix products (softmax and the
    scaling are free, like any elementwise op)."""
    batch, heads, queries, head_dim = query_shape
    keys, value_dim = key_shape[-2], value_shape[-1]
    return 2 * batch * heads * queries * keys * (head_dim + value_dim)


@dataclass(frozen=True)
class Cost:
    """MACs of one forward pass of one image, and where they are spent."""

    total: int
    stages: tuple[int, ...]  # stage i: encoder.patch_embeddings.i + encoder.block.i + encoder.layer_norm.i
    decoder: int
    attention: int  # Q K^T and A V of every attention layer; already part of total and stages

    def to_dict(self) -> dict:
        macs = asdict(self)
        macs["stages"] = list(self.stages)
        flops = {k: [2 * s for s in v] if isinstance(v, list) else 2 * v for k, v in macs.items()}
        return {"macs": macs, "flops": flops}


@dataclass(frozen=True)
class Profile:
    """Parameter counts and the published and executed cost of one model."""

    name: str
    size: tuple[int, int]
    num_classes: int
    params: int
    encoder_params: int
    decoder_params: int
    published: Cost
    executed: Cost

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "size": list(self.size),
            "num_classes": self.num_classes,
            "params": {"total": self.params, "encoder": self.encoder_params, "decoder": self.decoder_params},
            "published": self.published.to_dict(),
            "executed": self.executed.to_dict(),
        }


def meta_model(config: ModelConfig) -> SegmentationModel:
    """The model with parameters on the meta device: shapes only, built in no time."""
    with torch.device("meta"):
        return SegmentationModel(config).eval()


def count_params(config: ModelConfig) -> tuple[int, int, int]:
    """Parameters of the whole model, its encoder and its decode head."""
    model = meta_model(config)
    counts = parameter_counts(model)
    return counts["total"], counts["encoder"], counts["decode_head"]


def outermost_macs(counts: dict[str, dict], prefixes: list[str]) -> int:
    """MACs of the modules at or below ``prefixes``. A module's count already includes
    its children's, so only modules without a counted ancestor are summed."""
    names = [n for n in counts if any(n == p or n.startswith(p + ".") for p in prefixes)]
    outermost = [n for n in names if not any(n.startswith(other + ".") for other in names)]
    return sum(sum(counts[n].values()) for n in outermost) // 2


def count_macs(config: ModelConfig, size: tuple[int, int]) -> Cost:
    """Count one forward pass of a ``[1, C, H, W]`` input in eval mode.

    The parameters and input are fake CPU tensors: every op dispatches exactly as on
    CPU (same kernels, same decompositions) but nothing is computed or allocated, so
    B5 at 1024x1024 is counted in seconds.
    """
    model = meta_model(config)
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = model.to_empty(device="cpu")
        pixel_values = torch.empty(1, config.in_channels, *size)
        counter = FlopCounterMode(display=False, custom_mapping={SDPA_CPU: sdpa_flops})
        with torch.no_grad(), counter:
            model(pixel_values)
    # Module names come as "SegmentationModel.encoder.block.0.1...": drop the root.
    counts = {name.partition(".")[2]: ops for name, ops in counter.get_flop_counts().items() if "." in name}
    stages = tuple(
        outermost_macs(counts, [f"encoder.patch_embeddings.{i}", f"encoder.block.{i}", f"encoder.layer_norm.{i}"])
        for i in range(len(config.stages))
    )
    return Cost(
        total=counter.get_total_flops() // 2,
        stages=stages,
        decoder=outermost_macs(counts, ["decode_head"]),
        attention=counter.get_flop_counts()["Global"].get(SDPA_CPU, 0) // 2,
    )


def profile_model(
    name_or_config: str | ModelConfig, size: tuple[int, int] = (512, 512), num_classes: int | None = None
) -> Profile:
    """Parameters and MACs of a registered model or a config, published and as executed.

    ``num_classes`` overrides the config's (150 for the registered SegFormers).
    """
    config = get_config(name_or_config) if isinstance(name_or_config, str) else name_or_config
    if num_classes is not None:
        config = config.replace(num_classes=num_classes)
    size = (int(size[0]), int(size[1]))
    params, encoder_params, decoder_params = count_params(config)
    return Profile(
        name=config.name,
        size=size,
        num_classes=config.num_classes,
        params=params,
        encoder_params=encoder_params,
        decoder_params=decoder_params,
        published=count_macs(config.published(), size),
        executed=count_macs(config, size),
    )


SGEMM_SIDE = 1024  # a float32 matrix product large enough to run at the CPU's peak


def sgemm_runner(side: int = SGEMM_SIDE):
    """A callable that multiplies two fixed ``side x side`` float32 matrices (``side**3``
    MACs), ignoring its argument: the machine's reference rate, timed in turns with a model."""
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(side, side, generator=generator), torch.randn(side, side, generator=generator)
    out = torch.empty(side, side)
    return lambda _: torch.mm(a, b, out=out)


def machine_fraction(executed_macs: int, model_ms: float, sgemm_ms: float, side: int = SGEMM_SIDE) -> dict:
    """How close a model runs to the machine's limit: its executed GMACs per image, achieved
    GMAC/s, the sgemm rate measured beside it, and the fraction of that rate it reaches."""
    achieved = executed_macs / model_ms / 1e6
    sgemm = side**3 / sgemm_ms / 1e6
    return {"executed_gmacs": executed_macs / 1e9, "gmac_per_s": achieved, "sgemm_gmac_per_s": sgemm,
            "sgemm_fraction": achieved / sgemm}  # fmt: skip


def resolve_models(tokens: list[str]) -> list[str]:
    """Registered names from names, shell-style patterns and ``all``; unknown names
    fail before anything is counted."""
    names: list[str] = []
    for token in tokens:
        pattern = "*" if token == "all" else token
        if glob.escape(pattern) != pattern:  # has a wildcard
            matched = list_models(pattern)
            if not matched:
                raise KeyError(f"no registered model matches {token!r}; see 'segformer-lab models'")
        else:
            matched = [get_config(token).name]
        names += [n for n in matched if n not in names]
    return names
