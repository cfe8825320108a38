"""MODEL_DIR: the folder of trained models as `dvc repro` writes it under models/ and `ldm pull` brings it back.

It holds `autoencoder/` beside `ldm/` (and `ldm_sr/` for super-resolution, `ldm_inpaint/` for inpainting), each a
`model.safetensors` with its `config.json`. `ldm sample`, `ldm upscale`, `ldm inpaint`,
`ldm publish`, `ldm import`/`ldm export` and the `init_from` params read it.
"""

from __future__ import annotations

from pathlib import Path

from ldm.errors import InputNotFound

AUTOENCODER, LDM, LDM_SR = "autoencoder", "ldm", "ldm_sr"
LDM_INPAINT = "ldm_inpaint"
LDM_SEMANTIC = "ldm_semantic"  # semantic synthesis (label maps)
LDM_LAYOUT = "ldm_layout"  # layout-to-image (stage train_layout, `ldm sample --layout`)
WEIGHTS = "model.safetensors"


def model_folder(path: Path, name: str, key: str) -> Path:
    """`path`/`name` when `path` is a MODEL_DIR, else `path` itself when it is that model's folder; `key` names the
    setting in the error."""
    for folder in (path / name, path):
        if (folder / WEIGHTS).is_file():
            return folder
    raise InputNotFound(f"{key} {path}: neither it nor {path / name} holds {WEIGHTS}; point it at a MODEL_DIR"
                        " (`ldm import`, `ldm pull`) or at a model folder")
