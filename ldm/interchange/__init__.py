"""Models in and out: the reference's checkpoints and diffusers' folders, tensor for tensor.

`mapping` is the engine, `layout` lists our blocks, `reference_keys` and
`diffusers_keys` are the key tables (data), `reference` and `diffusers_io` read
and write whole model folders, `ckpt_reader` reads a `.ckpt` without running it.
"""

from ldm.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "bundle": ("ImportReport", "Target", "read_model_dir", "resolve_preset", "write_model_dir"),
    "ckpt_reader": ("read_state_dict",),
    "diffusers_io": ("export_diffusers", "import_diffusers"),
    "mapping": ("Block", "Format", "Rule", "export_state", "import_state", "plan"),
    "reference": ("export_reference", "import_reference"),
})
