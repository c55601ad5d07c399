"""Named augmentation pipelines on albumentations (image and mask jointly).

A pipeline is a ``Pipeline``: ``pipeline(image uint8 [H, W, 3], mask uint8 [H, W] | None)
-> (pixel_values float32 [3, H', W'], labels int64 [H'', W''] | None)``. Build one by name:

- ``segformer_ade``: mmseg's ADE20K training recipe: random rescale to ``ratio_range`` x
  ``scale`` keeping the aspect ratio, random crop with ``cat_max_ratio``, horizontal flip,
  photometric distortion, normalise, then pad to the crop size (image 0 *after*
  normalisation, i.e. the mean colour, as mmseg pads; mask 255);
- ``rope_seed``: resize to ``size`` and colour jitter (the RoPE seed's recipe);
- ``val``: a ``Preprocessing`` (``data/preprocessing.py``, the one definition that eval,
  predict and exported files use too): resize the image to fit ``scale`` as mmseg does
  (default (2048, 512)) or to a fixed ``size``, optionally aligned to a multiple of 32,
  normalise; the labels are NOT resized: evaluation compares predictions upsampled to
  the original label size;
- ``classify``: classification (Tiny-ImageNet): resize, and random resized crop + flip
  when ``train=True``;
- ``none``: normalise and convert only.

Sizes are ``(height, width)``; ``scale`` is mmseg's ``(long edge, short edge)`` bound,
in either order. Masks are always resized with nearest neighbour.

Randomness: each pipeline reseeds itself once per process from ``torch.initial_seed()``,
so DataLoader workers draw different augmentations and ``torch.manual_seed`` (or
Lightning's ``seed_everything``) makes runs repeatable. A dataset indexed with
``(index, seed)`` reseeds the pipeline for that sample (``Pipeline.reseed``): the
training loader does so, which makes every sample's augmentation a function of the run
seed, the epoch and the sample alone (the same with any number of workers, and after a
resume in the middle of an epoch).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network call at import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402

from .io import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from .preprocessing import Preprocessing, fit_size  # noqa: E402

Size = tuple[int, int]


class RandomRescale(A.DualTransform):
    """Rescale keeping the aspect ratio to fit ``scale`` times a ratio drawn from
    ``ratio_range`` (mmseg ``Resize(img_scale, ratio_range)``); a fixed fit when
    ``ratio_range`` is None."""

    def __init__(self, scale: Size, ratio_range: tuple[float, float] | None = None,
                 multiple_of: int | None = None, p: float = 1.0):
        super().__init__(p=p)
        self.scale, self.ratio_range, self.multiple_of = tuple(scale), ratio_range, multiple_of

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        ratio = 1.0 if self.ratio_range is None else self.py_random.uniform(*self.ratio_range)
        scale = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        return {"size": fit_size(*params["shape"][:2], scale, self.multiple_of)}

    def apply(self, img: np.ndarray, size: Size = (1, 1), **params: Any) -> np.ndarray:
        return cv2.resize(img, size[::-1], interpolation=cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, size: Size = (1, 1), **params: Any) -> np.ndarray:
        return cv2.resize(mask, size[::-1], interpolation=cv2.INTER_NEAREST)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale", "ratio_range", "multiple_of")


class CatMaxRatioCrop(A.DualTransform):
    """Random crop of at most ``size`` (smaller images are not padded here) that tries up
    to ``max_tries`` positions for one where no class covers ``cat_max_ratio`` or more of
    the labelled (non-ignore) pixels and at least two classes appear; if none qualifies,
    the last position tried is kept (mmseg ``RandomCrop(cat_max_ratio=...)``)."""

    def __init__(self, size: Size, cat_max_ratio: float = 0.75, max_tries: int = 10,
                 ignore_index: int = IGNORE_INDEX, p: float = 1.0):
        super().__init__(p=p)
        self.size, self.cat_max_ratio, self.max_tries = tuple(size), cat_max_ratio, max_tries
        self.ignore_index = ignore_index

    def _acceptable(self, mask: np.ndarray) -> bool:
        counts = np.bincount(mask.ravel(), minlength=256)
        counts[self.ignore_index] = 0
        counts = counts[counts > 0]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        crop_h, crop_w = min(self.size[0], height), min(self.size[1], width)
        mask = data.get("mask")
        tries = self.max_tries if mask is not None and self.cat_max_ratio < 1 else 1
        for _ in range(tries):
            y = self.py_random.randint(0, height - crop_h)
            x = self.py_random.randint(0, width - crop_w)
            if tries == 1 or self._acceptable(mask[y:y + crop_h, x:x + crop_w]):
                break
        return {"box": (y, x, crop_h, crop_w)}

    def apply(self, img: np.ndarray, box: tuple[int, int, int, int] = (0, 0, 0, 0), **params: Any) -> np.ndarray:
        y, x, h, w = box
        return np.ascontiguousarray(img[y:y + h, x:x + w])

    def apply_to_mask(self, mask: np.ndarray, box: tuple[int, int, int, int] = (0, 0, 0, 0), **params: Any) -> np.ndarray:
        return self.apply(mask, box)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "cat_max_ratio", "max_tries", "ignore_index")


class PhotoMetricDistortion(A.ImageOnlyTransform):
    """mmseg's PhotoMetricDistortion on uint8 RGB, each step with probability 1/2:
    brightness (add U(-32, 32)), contrast (multiply U(0.5, 1.5)) either first or last,
    saturation (multiply S by U(0.5, 1.5)) and hue (shift H by an integer in
    [-18, 18] of OpenCV's 0..179 scale); values are clipped and truncated to uint8."""

    def __init__(self, brightness_delta: float = 32, contrast_range: tuple[float, float] = (0.5, 1.5),
                 saturation_range: tuple[float, float] = (0.5, 1.5), hue_delta: int = 18, p: float = 1.0):
        super().__init__(p=p)
        self.brightness_delta, self.hue_delta = brightness_delta, hue_delta
        self.contrast_range, self.saturation_range = contrast_range, saturation_range

    def get_params(self) -> dict[str, Any]:
        rnd = self.py_random
        coin = lambda: rnd.random() < 0.5  # noqa: E731
        return {
            "beta": rnd.uniform(-self.brightness_delta, self.brightness_delta) if coin() else None,
            "contrast_first": coin(),
            "alpha": rnd.uniform(*self.contrast_range) if coin() else None,
            "saturation": rnd.uniform(*self.saturation_range) if coin() else None,
            "hue": rnd.randint(-self.hue_delta, self.hue_delta) if coin() else None,
        }

    @staticmethod
    def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def apply(self, img: np.ndarray, beta=None, contrast_first=True, alpha=None,
              saturation=None, hue=None, **params: Any) -> np.ndarray:
        if beta is not None:
            img = self._convert(img, beta=beta)
        if alpha is not None and contrast_first:
            img = self._convert(img, alpha=alpha)
        if saturation is not None or hue is not None:
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            if saturation is not None:
                hsv[:, :, 1] = self._convert(hsv[:, :, 1], alpha=saturation)
            if hue is not None:
                hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int16) + hue) % 180
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if alpha is not None and not contrast_first:
            img = self._convert(img, alpha=alpha)
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness_delta", "contrast_range", "saturation_range", "hue_delta")


class Pipeline:
    """``augment`` (on uint8) -> normalise -> ``post`` (on the normalised float image,
    e.g. padding) -> tensors. With ``resize_mask=False`` only the image goes through
    the steps and the labels come back as given (evaluation at the original size)."""

    def __init__(self, augment: Sequence[A.BasicTransform] = (), post: Sequence[A.BasicTransform] = (),
                 *, resize_mask: bool = True, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD):
        self.resize_mask = resize_mask
        self.compose = A.Compose([*augment, A.Normalize(mean=mean, std=std, max_pixel_value=255.0),
                                  *post, ToTensorV2()])
        self._seeded_pid: int | None = None

    def reseed(self, seed: int) -> None:
        """Restart the random stream from ``seed`` (the engine does this per sample)."""
        self.compose.set_random_seed(seed % 2**32)
        self._seeded_pid = os.getpid()

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._seeded_pid != os.getpid():  # a new process (DataLoader worker): new stream
            self.reseed(torch.initial_seed())
        if mask is None or not self.resize_mask:
            out = self.compose(image=image)
            labels = None if mask is None else torch.from_numpy(np.array(mask, dtype=np.int64))
        else:
            out = self.compose(image=image, mask=mask)
            labels = out["mask"].long()
        return out["image"], labels

    def __repr__(self) -> str:
        steps = ", ".join(type(t).__name__ for t in self.compose.transforms)
        return f"Pipeline([{steps}], resize_mask={self.resize_mask})"


def _segformer_ade(crop_size: Size = (512, 512), scale: Size = (2048, 512),
                   ratio_range: tuple[float, float] = (0.5, 2.0), cat_max_ratio: float = 0.75,
                   flip_prob: float = 0.5, photometric: bool = True) -> Pipeline:
    augment = [RandomRescale(scale, ratio_range), CatMaxRatioCrop(crop_size, cat_max_ratio),
               A.HorizontalFlip(p=flip_prob)]
    if photometric:
        augment.append(PhotoMetricDistortion())
    pad = A.PadIfNeeded(min_height=crop_size[0], min_width=crop_size[1], position="top_left",
                        border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX)
    return Pipeline(augment, [pad])


def _rope_seed(size: Size = (512, 512), jitter: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.1)
               ) -> Pipeline:
    # area_for_downscale: like the antialiased PIL bilinear of SegformerImageProcessor
    resize = A.Resize(*size, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                      area_for_downscale="image")
    b, c, s, h = jitter
    return Pipeline([resize, A.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h, p=1.0)])


def _val(**params: Any) -> Preprocessing:
    """The validation transform: a ``Preprocessing`` with ``params`` (its keys), keep-ratio
    within (2048, 512) unless ``scale`` or ``size`` says otherwise."""
    if "size" not in params:
        params.setdefault("scale", (2048, 512))
    return Preprocessing.from_dict(params, "val transforms")


def _classify(size: int = 64, train: bool = False) -> Pipeline:
    if train:
        return Pipeline([A.RandomResizedCrop((size, size), scale=(0.35, 1.0)), A.HorizontalFlip(p=0.5)])
    return Pipeline([A.Resize(size, size, area_for_downscale="image")])


def _none() -> Pipeline:
    return Pipeline()


PIPELINES: dict[str, Callable[..., Pipeline | Preprocessing]] = {
    "segformer_ade": _segformer_ade,
    "rope_seed": _rope_seed,
    "val": _val,
    "classify": _classify,
    "none": _none,
}


def build_transforms(name: str, **params: Any) -> Pipeline | Preprocessing:
    """Build a named pipeline; ``params`` override its defaults (see the module notes)."""
    try:
        builder = PIPELINES[name]
    except KeyError:
        raise ValueError(f"unknown transforms {name!r}; choose from {sorted(PIPELINES)}") from None
    return builder(**params)
