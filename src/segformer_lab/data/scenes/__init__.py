"""A scene-parsing dataset generated from the photographs that scikit-image ships.

``generate_scenes(out_dir)`` renders outdoor-like scenes (sky, a horizon, buildings and
mountains behind it, ground of several kinds, objects of several sizes that occlude
each other, thin poles and fences, overhead wires) by cutting texture patches out of
``skimage.data`` photographs (brick, grass, gravel, moon, immunohistochemistry, the
coffee table's wood, Chelsea's fur, a text page...) with colour, scale and rotation
jitter, and writes them in the ADE20K layout::

    out_dir/images/{training,validation}/scene_000000.jpg
    out_dir/annotations/{training,validation}/scene_000000.png   # 0 = unlabelled, class c -> c + 1
    out_dir/classes.txt                                           # one name per line
    out_dir/dataset.json                                          # generator, version, seed, counts, sizes

Load it with the ADE20K format: ``build_dataset("ade20k", out_dir, "train"/"val")`` (class
names from ``classes.txt``, reduce-zero-label).

What makes it a scene-parsing task rather than texture classification:

- three pairs of classes look the same and differ only by position or context: ``sky``
  and ``water`` (one generator: a gradient with clouds; water lies below the horizon),
  ``wall`` and ``pavement`` (brick; walls stand above the horizon, pavement is ground)
  and ``mountain`` and ``rock`` (the moon's surface; a mountain range rises above the
  horizon, rocks are small objects lying on the ground). ``SCENE_AMBIGUOUS_PAIRS``;
- objects are placed in perspective (farther is smaller and higher) and drawn far to
  near, so they occlude each other; poles, sign posts, fences are one to a few pixels
  wide;
- some pixels are unlabelled (0): overhead wires, "clutter" blobs cut from unrelated
  photographs, and in about half the images a one-pixel boundary around objects;
- validation images vary in size and aspect ratio (0.75x to 2x the training size plus
  32 pixels per side; every fourth is at least 2x on both sides; none has both sides
  divisible by 32). A scene's geometry and texture scale follow its shorter side, so a
  larger image shows the same kind of scene at a higher resolution.

Every image is drawn from its own random generator seeded by ``(seed, split, index)``:
the bytes written do not depend on the number of worker processes, and two runs with
the same parameters write identical files (with the same Pillow/libjpeg build).
A finished dataset is found by ``dataset.json`` and reused; anything else is generated
in a temporary directory next to ``out_dir`` and renamed into place.

Modules: ``classes`` (names, palette, ambiguous pairs), ``textures`` (the photographs as
texture banks), ``canvas`` (appearances and drawing primitives), ``render`` (the scene
layout, ``render_scene``), ``writer`` (the dataset on disk).
"""

from .classes import SCENE_AMBIGUOUS_PAIRS, SCENE_CLASSES, SCENE_PALETTE
from .render import render_scene
from .writer import generate_scenes, scenes_ready

__all__ = [
    "SCENE_AMBIGUOUS_PAIRS", "SCENE_CLASSES", "SCENE_PALETTE", "generate_scenes", "render_scene",
    "scenes_ready",
]
