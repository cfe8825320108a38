"""The presets of the paper's inpainting (Sec. 4.5), semantic synthesis (Sec. 4.3.2) and layout-to-image
(Sec. 4.3.1) models, at the paper's sizes (Tab. 15, 17) and CPU-sized."""

from __future__ import annotations

from collections.abc import Callable

from ldm.conditioning.config import PAPER_LAYOUT_VOCAB_SIZE, ConditioningConfig, largest_grid
from ldm.latent_diffusion.config import LDMConfig, UNetConfig
from ldm.latent_diffusion.preset_parts import task_diffusion, tiny_unet
from ldm.masks.config import MASK, MASKED_IMAGE

# The layout models' box transformer is the same wrapper (BERTEmbedder, n_embed 512, vocab_size 8192): its unused
# `to_logits` head is 512 * 8192 + 8192, counted by the paper's 306M and 345M (Tab. 15) and recorded the same way.
LAYOUT_UNUSED_LM_HEAD = 512 * PAPER_LAYOUT_VOCAB_SIZE + PAPER_LAYOUT_VOCAB_SIZE
OPENIMAGES_BOX_CLASSES = 600  # OpenImages' boxable classes
COCO_THING_CLASSES = 80  # COCO instances (detection) categories
STAND_IN_CLASSES = 8  # the stand-in label maps' regions (label_maps.n_regions), whose boxes the embedded default uses


# Inpainting (Sec. 4.5, D.2.2): the first stage's latent of the masked image x (1 - m) and the mask resized to the
# latent are concatenated to z_t, 3 + 3 + 1 = 7 UNet input channels for an f4 first stage.
_INPAINT = ConditioningConfig(kind="concat", concat_keys=(MASKED_IMAGE, MASK), concat_channels=(3, 1))


def _inpaint_ldm4() -> LDMConfig:
    """Tab. 15 inpainting: 215M, the semantic-synthesis UNet shape (128 channels, multipliers 1,4,8, 8 heads) with
    7 input channels; the config's attention resolutions 32,16,8 are never reached by 3 levels, so attention only in
    the middle block. VQ-f4 first stage without attention, as the reference's inpainting model."""
    return LDMConfig(
        unet=UNetConfig(in_channels=7, out_channels=3, model_channels=128, channel_mult=(1, 4, 8),
                        num_res_blocks=2, attention_resolutions=(), num_heads=8),
        conditioning=_INPAINT, diffusion=task_diffusion("inpainting", loss_type="l1"),
        latent_channels=3, latent_size=(64, 64), first_stage="vq-f4-noattn",
    )


def _inpaint_ldm4_big() -> LDMConfig:
    """The reference's released big inpainting model (models/ldm/inpainting_big/config.yaml): 256 channels,
    multipliers 1,2,3,4, attention at factors 8,4,2 with 8 heads, res-block up/down sampling: 387.2M."""
    return LDMConfig(
        unet=UNetConfig(in_channels=7, out_channels=3, model_channels=256, channel_mult=(1, 2, 3, 4),
                        num_res_blocks=2, attention_resolutions=(2, 4, 8), num_heads=8, resblock_updown=True),
        conditioning=_INPAINT, diffusion=task_diffusion("inpainting", loss_type="l1"),
        latent_channels=3, latent_size=(64, 64), first_stage="vq-f4-noattn",
    )


def _semantic_ldm4() -> LDMConfig:
    """Tab. 15 semantic synthesis: 215M; the one-hot label map (182 COCO-Stuff classes, as the released model)
    through the spatial rescaler (546 parameters) concatenated to the latent; VQ-f4 without attention, L1.

    The reference config lists attention resolutions 32,16,8, which as downsampling factors a 3-level UNet
    never reaches: self-attention only in the middle block (REFERENCE.md), 8 heads.
    """
    return LDMConfig(
        unet=UNetConfig(in_channels=6, out_channels=3, model_channels=128, channel_mult=(1, 4, 8),
                        num_res_blocks=2, attention_resolutions=(), num_heads=8),
        conditioning=ConditioningConfig(kind="semantic", n_classes=182, rescaler_stages=2, rescaler_channels=3),
        diffusion=task_diffusion("semantic", loss_type="l1"),
        latent_channels=3, latent_size=(64, 64), first_stage="vq-f4-noattn",
    )


def _box_transformer(n_classes: int) -> ConditioningConfig:
    """Tab. 17's layout tau_theta: 16 blocks of width 512 (8 heads of 64) over 92 box tokens (30 boxes); the finest
    grid whose G^2 + K + 1 ids fit the reference's 8192-token vocabulary (87 for OpenImages, 90 for COCO)."""
    return ConditioningConfig(kind="layout", n_classes=n_classes, grid=largest_grid(n_classes), max_boxes=30,
                              dim=512, depth=16, heads=8, dim_head=64)


def _layout_openimages_ldm4() -> LDMConfig:
    """Tab. 15 layout-to-image on OpenImages, LDM-4: the reference's layout2img-openimages256 config (128 channels,
    multipliers 1,2,3,4, cross-attention at factors 2,4,8 with 32 channels per head, transformer depth 3, context
    512) on VQ-f4 latents without first-stage attention, L1 loss. UNet 246.3M + box transformer 54.6M + the unused
    head 4.2M = 305.1M (paper: 306M)."""
    return LDMConfig(
        unet=UNetConfig(in_channels=3, out_channels=3, model_channels=128, channel_mult=(1, 2, 3, 4),
                        num_res_blocks=2, attention_resolutions=(2, 4, 8), attention="cross", num_head_channels=32,
                        transformer_depth=3, context_dim=512),
        conditioning=_box_transformer(OPENIMAGES_BOX_CLASSES),
        diffusion=task_diffusion("layout", loss_type="l1"),
        latent_channels=3, latent_size=(64, 64), first_stage="vq-f4-noattn",
        paper_extra_params=LAYOUT_UNUSED_LM_HEAD,
    )


def _layout_coco_ldm8() -> LDMConfig:
    """Tab. 15 layout-to-image on COCO, LDM-8 (345M): no reference config was released; derived from Tab. 15.

    Tab. 15 gives 192 channels, multipliers 1,2,4, depth 2, cross-attention at 32,16,8 on the 32x32x4 VQ-f8 latent
    (factors 1,2,4), transformer depth 2, context 512, dropout 0.1, and Tab. 17 the box transformer (54.6M + the
    unused head 4.2M, as the OpenImages model). With the reference's middle-block transformer as well this counts
    371.1M, 7.6% over; without it (mid_attention off: a res block, a res block) the count is 347.1M, +0.6% of 345M,
    and no other single setting of the table lands within 1% (with the middle block's transformer, attention at
    factors 2,4 only: 362.1M; at 4 only: 330.1M).
    32 channels per head as the released LDM-8 models (Tab. 15 lists one head; the count does not depend on it).
    """
    return LDMConfig(
        unet=UNetConfig(in_channels=4, out_channels=4, model_channels=192, channel_mult=(1, 2, 4), num_res_blocks=2,
                        attention_resolutions=(1, 2, 4), attention="cross", num_head_channels=32,
                        transformer_depth=2, context_dim=512, mid_attention=False, dropout=0.1),
        conditioning=_box_transformer(COCO_THING_CLASSES),
        diffusion=task_diffusion("layout", loss_type="l1"),
        latent_channels=4, latent_size=(32, 32), first_stage="vq-f8",
        paper_extra_params=LAYOUT_UNUSED_LM_HEAD,
    )


def _tiny_inpaint() -> LDMConfig:
    """Inpainting: the masked image's 16x16x3 latent and the 16x16 mask concatenated to 16x16x3 latents."""
    return LDMConfig(
        unet=tiny_unet(7), conditioning=_INPAINT,
        # x0-prediction, not the paper's eps: the known latents are then a copy of the condition at every t. After
        # 60 CPU batches of 16 (tests/test_train_inpaint.py's cache) the decoded error outside the hole against the
        # first stage's reconstruction was 24.7 (x0), 32.7 (v), 35.8 (eps) in [0, 255] units; untrained: 32-42.
        diffusion=task_diffusion("inpainting", loss_type="l1", parameterization="x0"),
        latent_channels=3, latent_size=(16, 16), first_stage="kl-f4-tiny",
    )


def _tiny_semantic() -> LDMConfig:
    """Semantic synthesis: a 64x64 label map of 8 classes (the stand-in's label_maps.n_regions) rescaled to
    16x16x3 and concatenated to 16x16x3 latents; L1 as the paper's."""
    return LDMConfig(
        unet=tiny_unet(6),
        conditioning=ConditioningConfig(kind="semantic", n_classes=8, rescaler_stages=2, rescaler_channels=3),
        diffusion=task_diffusion("semantic", loss_type="l1"),
        latent_channels=3, latent_size=(16, 16), first_stage="kl-f4-tiny",
    )


def _tiny_layout() -> LDMConfig:
    """Layout-conditional: the stand-in's 8 classes, a 17 x 17 grid (one step per latent pixel of 16x16), the 16
    largest boxes (50 tokens), a 2-layer, 128-d box transformer."""
    return LDMConfig(
        unet=tiny_unet(3, attention="cross", context_dim=128),
        conditioning=ConditioningConfig(kind="layout", n_classes=STAND_IN_CLASSES, grid=17, max_boxes=16, dim=128,
                                        depth=2, heads=4, dim_head=32),
        diffusion=task_diffusion("layout", loss_type="l1"),
        latent_channels=3, latent_size=(16, 16), first_stage="kl-f4-tiny",
    )


PAPER_TASK_PRESETS: dict[str, Callable[[], LDMConfig]] = {
    "inpaint-ldm4": _inpaint_ldm4,
    "inpaint-ldm4-big": _inpaint_ldm4_big,
    "semantic-ldm4": _semantic_ldm4,
    "layout-openimages-ldm4": _layout_openimages_ldm4,
    "layout-coco-ldm8": _layout_coco_ldm8,
}
TINY_TASK_PRESETS: dict[str, Callable[[], LDMConfig]] = {
    "tiny-inpaint": _tiny_inpaint,
    "tiny-semantic": _tiny_semantic,
    "tiny-layout": _tiny_layout,
}
