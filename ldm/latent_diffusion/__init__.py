"""The latent diffusion model: the ablated UNet with cross-attention, conditioning, presets, Lightning training,
checkpoints, sampling, super-resolution, inpainting and semantic synthesis."""

from ldm.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "attention": ("AttentionBlock", "CrossAttention", "GEGLUFeedForward", "SpatialTransformer"),
    "blocks": ("ResBlock", "timestep_embedding"),
    "checkpoint": ("LDMCard", "LoadedLDM", "init_ldm", "load_ldm", "save_ldm"),
    "config": ("AttentionKind", "LDMConfig", "UNetConfig"),
    "generate": ("ImageGuide", "conditions", "decode_latents", "generate_latents", "latent_size", "sample_images"),
    "inpaint": ("check_inpaint_model", "fill_holes", "inpaint_condition", "inpaint_images", "inpaint_latents"),
    "lightning_module": ("LDMTrainingModule",),
    "model": ("LatentDiffusionModel", "build_ldm"),
    "presets": ("TXT2IMG_UNUSED_LM_HEAD", "VQ_F4_PARAMS", "preset_config", "preset_names"),
    "semantic": ("check_label_maps", "check_semantic_model", "sample_from_label_maps"),
    "train_config": ("TrainConfig",),
    "unet": ("UNet",),
    "upscale": ("evaluate_sr", "upscale_image", "upscale_latents"),
})
