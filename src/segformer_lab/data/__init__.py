"""Data: datasets (ADE20K, Cityscapes, parquet, folders, Tiny-ImageNet), transforms, the
one definition of how a model takes images (``Preprocessing``), the
known datasets' class names and palettes, the dataset checker (``diagnose``), and the
generated scenes dataset (ADE20K layout: load it with the "ade20k" format).

Knows nothing of models. Typical use::

    from segformer_lab.data import build_dataset, build_transforms, collate
    train = build_dataset("ade20k", "data/ADEChallengeData2016", "train",
                          transforms=build_transforms("segformer_ade"), num_classes=150)
    val = build_dataset("ade20k", "data/ADEChallengeData2016", "val",
                        transforms=Preprocessing(scale=(2048, 512), multiple_of=32))
    loader = DataLoader(train, batch_size=16, shuffle=True, collate_fn=collate)
"""

from .._lazy import lazy_exports
from .ade20k import ADE20K_CLASSES, ADE20K_PALETTE
from .io import (
    IGNORE_INDEX,
    IMAGE_SUFFIXES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataError,
    DataWarning,
    array_rgb,
    decode_image,
    decode_mask,
    image_rgb,
    read_text,
    reduce_zero_label,
    upright_image,
)
from .preprocessing import (
    DATASET_DEFAULT,
    IMAGE_DEFAULT,
    MODES,
    Preprocessing,
    PreprocessingError,
    choose_preprocessing,
    fit_size,
    resize_pixels,
)
from .palettes import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    KNOWN_PALETTES,
    VOC_CLASSES,
    VOC_PALETTE,
    Palette,
    read_palette,
)

# datasets, transforms and the scenes generator load albumentations and scikit-image: imported on
# first use, so that the constants above serve timing code without them (benchmarks/bench_gpu.py)
_EXPORTS = {
    **dict.fromkeys(
        ("DATASETS", "ADE20KDataset", "BaseDataset", "CityscapesDataset", "DataReport", "FolderDataset",
         "ParquetDataset", "SegmentationDataset", "TinyImageNetDataset", "build_dataset",
         "check_dataset", "collate"),
        "datasets",
    ),
    **dict.fromkeys(
        ("SCENE_AMBIGUOUS_PAIRS", "SCENE_CLASSES", "SCENE_PALETTE", "generate_scenes", "render_scene",
         "scenes_ready"),
        "scenes",
    ),
    **dict.fromkeys(
        ("PIPELINES", "CatMaxRatioCrop", "PhotoMetricDistortion", "Pipeline", "RandomRescale",
         "build_transforms"),
        "transforms",
    ),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "DATASET_DEFAULT", "IMAGE_DEFAULT", "MODES", "Preprocessing", "PreprocessingError", "choose_preprocessing",
    "resize_pixels",
    "ADE20K_CLASSES", "ADE20K_PALETTE", "CITYSCAPES_CLASSES", "CITYSCAPES_PALETTE", "DATASETS", "KNOWN_PALETTES",
    "VOC_CLASSES", "VOC_PALETTE", "CityscapesDataset", "Palette", "read_palette", "IGNORE_INDEX", "IMAGENET_MEAN", "IMAGENET_STD",
    "IMAGE_SUFFIXES", "PIPELINES", "SCENE_AMBIGUOUS_PAIRS", "SCENE_CLASSES", "SCENE_PALETTE",
    "ADE20KDataset", "BaseDataset", "CatMaxRatioCrop", "DataError", "DataReport", "DataWarning",
    "FolderDataset", "ParquetDataset", "PhotoMetricDistortion", "Pipeline", "RandomRescale",
    "SegmentationDataset", "TinyImageNetDataset", "build_dataset", "build_transforms",
    "check_dataset", "collate", "array_rgb", "image_rgb", "upright_image", "decode_image", "decode_mask",
    "fit_size", "generate_scenes", "read_text", "reduce_zero_label", "render_scene", "scenes_ready",
]
