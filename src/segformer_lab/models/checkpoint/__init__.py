"""Reading checkpoints of every supported format, and the export to Hugging Face.

One pipeline for every source, one module per step:

- ``formats``: the key-format table, ``KEY_FORMATS`` (a new format is one entry);
- ``rope_seed``: the SegFormer-with-RoPE seed's checkpoints (its entry's pieces, its ``config.json``);
- ``reading``: read -> unwrap -> detect, safely (``torch.load(weights_only=True)``);
- ``convert``: rename (and split) the keys into ours;
- ``compare``: compare with the model, explain or refuse every difference, load (``LoadReport``);
- ``architecture``: the config of the model to build (ours, Hugging Face's, or inferred);
- ``loaders``: the public loaders (``load_weights``, ``load_model``, ``load_classifier``,
  ``load_classifier_weights``);
- ``hf_export``: our keys and configs for transformers, ``save_transformers``.

This project's own directory format and ``CheckpointError`` are ``models.pretrained``'s.
"""

from ..pretrained import CheckpointError
from .compare import LoadReport
from .formats import KEY_FORMATS
from .hf_export import save_transformers, to_hf_config, to_hf_state_dict, transformers_differences
from .loaders import load_classifier, load_classifier_weights, load_model, load_weights

__all__ = [
    "KEY_FORMATS",
    "CheckpointError",
    "LoadReport",
    "load_classifier",
    "load_classifier_weights",
    "load_model",
    "load_weights",
    "save_transformers",
    "to_hf_config",
    "to_hf_state_dict",
    "transformers_differences",
]
