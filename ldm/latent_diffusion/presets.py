"""Named LDM configurations: the paper's models (Tab. 12, 13, 15, 17) and CPU-sized ones.

UNet settings follow CompVis/latent-diffusion `configs/latent-diffusion/*.yaml` and
`models/ldm/*/config.yaml`; schedule start/end per task as REFERENCE.md lists them.
`attention_resolutions` are downsampling factors (64x64 latent: 32,16,8 -> 2,4,8).
"""

from __future__ import annotations

from collections.abc import Callable

from ldm.conditioning.config import PAPER_LAYOUT_VOCAB_SIZE, ConditioningConfig, largest_grid
from ldm.diffusion.config import DiffusionConfig
from ldm.latent_diffusion.config import LDMConfig, UNetConfig
from ldm.masks.config import MASK, MASKED_IMAGE

# VQ-f4 first stage of LDM-BSR (Tab. 15 counts it in the 169M): the reference
# models/first_stage_models/vq-f4 config (ch 128, ch_mult [1,2,4], 2 res blocks, z 3,
# n_embed 8192, embed_dim 3, attention in the mid block) has 55,322,782 parameters
# (encoder 22,337,411 + decoder 32,960,771 + codebook 8192 x 3 + two 1x1 quant convs of 12;
# the training-only discriminator and LPIPS are not part of the model), counted by hand
# from that config and matched by ldm.autoencoder preset "vq-f4".
VQ_F4_PARAMS = 55_322_782
# The reference's text encoder is x-transformers' TransformerWrapper, which also builds a
# `to_logits` head (dim x vocab + vocab = 1280 * 30522 + 30522) that BERTEmbedder never
# calls; the paper's 1.45B counts it. We do not build unused weights (they would also
# break DDP's unused-parameter check), so the preset records them here.
TXT2IMG_UNUSED_LM_HEAD = 1280 * 30522 + 30522
# The layout models' box transformer is the same wrapper (BERTEmbedder, n_embed 512, vocab_size 8192): its unused
# `to_logits` head is 512 * 8192 + 8192, counted by the paper's 306M and 345M (Tab. 15) and recorded the same way.
LAYOUT_UNUSED_LM_HEAD = 512 * PAPER_LAYOUT_VOCAB_SIZE + PAPER_LAYOUT_VOCAB_SIZE
OPENIMAGES_BOX_CLASSES = 600  # OpenImages' boxable classes
COCO_THING_CLASSES = 80  # COCO instances (detection) categories
STAND_IN_CLASSES = 8  # the stand-in label maps' regions (label_maps.n_regions), whose boxes the embedded default uses

_SCHEDULES = {  # (linear_start, linear_end) per task, REFERENCE.md "Diffusion"
    "faces_bedrooms_cin": (0.0015, 0.0195),
    "churches_sr": (0.0015, 0.0155),
    "txt2img": (0.00085, 0.012),
    "inpainting": (0.0015, 0.0205),
    "semantic": (0.0015, 0.0205),
    "layout": (0.0015, 0.0205),
}


def _diffusion(task: str, **kw: object) -> DiffusionConfig:
    start, end = _SCHEDULES[task]
    return DiffusionConfig(linear_start=start, linear_end=end, **kw)  # type: ignore[arg-type]


def _uncond(channels: int, mult: tuple[int, ...], factors: tuple[int, ...], side: int, z: int,
            first_stage: str) -> LDMConfig:
    """Tab. 12 and 14: an unconditional LDM with self-attention at `factors`, 32 channels per head."""
    return LDMConfig(
        unet=UNetConfig(in_channels=z, out_channels=z, model_channels=channels, channel_mult=mult,
                        num_res_blocks=2, attention_resolutions=factors, num_head_channels=32),
        diffusion=_diffusion("faces_bedrooms_cin"),
        latent_channels=z, latent_size=(side, side), first_stage=first_stage,
    )


def _ldm4_uncond() -> LDMConfig:
    """Tab. 12, CelebA-HQ / FFHQ / LSUN-Bedrooms LDM-4 (= Tab. 14 LDM-4): 274M."""
    return _uncond(224, (1, 2, 3, 4), (2, 4, 8), 64, 3, "vq-f4")


def _churches_ldm8() -> LDMConfig:
    """Tab. 12, LSUN-Churches LDM-8 (KL-f8): 294M, scale-shift norm, res-block resampling, L1."""
    return LDMConfig(
        unet=UNetConfig(in_channels=4, out_channels=4, model_channels=192, channel_mult=(1, 2, 2, 4, 4),
                        num_res_blocks=2, attention_resolutions=(1, 2, 4, 8), num_heads=8,
                        use_scale_shift_norm=True, resblock_updown=True),
        diffusion=_diffusion("churches_sr", loss_type="l1"),
        latent_channels=4, latent_size=(32, 32), first_stage="kl-f8",
    )


def _cin(channels: int, mult: tuple[int, ...], factors: tuple[int, ...], side: int, z: int, first_stage: str,
         **heads: int) -> LDMConfig:
    """Tab. 13: class-conditional ImageNet, a 512-d token per class cross-attended at `factors`."""
    return LDMConfig(
        unet=UNetConfig(in_channels=z, out_channels=z, model_channels=channels, channel_mult=mult,
                        num_res_blocks=2, attention_resolutions=factors, attention="cross",
                        transformer_depth=1, context_dim=512, **heads),
        conditioning=ConditioningConfig(kind="class", n_classes=1000, embed_dim=512),
        diffusion=_diffusion("faces_bedrooms_cin"),
        latent_channels=z, latent_size=(side, side), first_stage=first_stage,
    )


def _cin_ldm8() -> LDMConfig:
    """Tab. 13 LDM-8, class-conditional ImageNet: 395M (UNet + 1000-class 512-d embedding); 32 channels
    per head as the released cin-ldm-vq-f8 config (Tab. 13 lists one head)."""
    return _cin(256, (1, 2, 4), (1, 2, 4), 32, 4, "vq-f8", num_head_channels=32)


def _txt2img_ldm8() -> LDMConfig:
    """Tab. 15/17, text-to-image on LAION (KL-f8): 1.45B with its 32-layer, 1280-d text transformer."""
    return LDMConfig(
        unet=UNetConfig(in_channels=4, out_channels=4, model_channels=320, channel_mult=(1, 2, 4, 4),
                        num_res_blocks=2, attention_resolutions=(1, 2, 4), attention="cross",
                        num_heads=8, transformer_depth=1, context_dim=1280, use_checkpoint=True),
        conditioning=ConditioningConfig(kind="text", tokenizer="bert", vocab_size=30522, max_seq_len=77, dim=1280,
                                        depth=32),
        diffusion=_diffusion("txt2img"),
        latent_channels=4, latent_size=(32, 32), first_stage="kl-f8",
        paper_extra_params=TXT2IMG_UNUSED_LM_HEAD,
    )


def _bsr_sr_ldm4() -> LDMConfig:
    """Tab. 15 super-resolution (LDM-BSR): 169M with its VQ-f4 first stage; LR image concatenated.

    Tab. 15 lists no attention, but the reference model attends at factor 8 and in the
    middle block (its config also names 16, which a 4-level UNet never reaches).
    """
    return LDMConfig(
        unet=UNetConfig(in_channels=6, out_channels=3, model_channels=160, channel_mult=(1, 2, 2, 4),
                        num_res_blocks=2, attention_resolutions=(8,), num_head_channels=32),
        conditioning=ConditioningConfig(kind="concat", concat_keys=("lr",), concat_channels=(3,)),
        diffusion=_diffusion("churches_sr"),
        latent_channels=3, latent_size=(64, 64), first_stage="vq-f4",
        paper_extra_params=VQ_F4_PARAMS,
    )


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
        conditioning=_INPAINT, diffusion=_diffusion("inpainting", loss_type="l1"),
        latent_channels=3, latent_size=(64, 64), first_stage="vq-f4-noattn",
    )


def _inpaint_ldm4_big() -> LDMConfig:
    """The reference's released big inpainting model (models/ldm/inpainting_big/config.yaml): 256 channels,
    multipliers 1,2,3,4, attention at factors 8,4,2 with 8 heads, res-block up/down sampling: 387.2M."""
    return LDMConfig(
        unet=UNetConfig(in_channels=7, out_channels=3, model_channels=256, channel_mult=(1, 2, 3, 4),
                        num_res_blocks=2, attention_resolutions=(2, 4, 8), num_heads=8, resblock_updown=True),
        conditioning=_INPAINT, diffusion=_diffusion("inpainting", loss_type="l1"),
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
        diffusion=_diffusion("semantic", loss_type="l1"),
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
        diffusion=_diffusion("layout", loss_type="l1"),
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
        diffusion=_diffusion("layout", loss_type="l1"),
        latent_channels=4, latent_size=(32, 32), first_stage="vq-f8",
        paper_extra_params=LAYOUT_UNUSED_LM_HEAD,
    )


# CPU-sized models for 16x16x3 latents (64x64 images, f4 autoencoder). Width 64 with
# GroupNorm(16): the reference's 32 groups would leave 2 channels per group.
def _tiny_unet(in_channels: int, attention: str = "self", context_dim: int = 0) -> UNetConfig:
    return UNetConfig(in_channels=in_channels, out_channels=3, model_channels=64, channel_mult=(1, 2),
                      num_res_blocks=1, attention_resolutions=(2,), attention=attention,  # type: ignore[arg-type]
                      num_head_channels=32, context_dim=context_dim, norm_groups=16)


def _tiny_uncond() -> LDMConfig:
    return LDMConfig(unet=_tiny_unet(3), diffusion=_diffusion("faces_bedrooms_cin"),
                     latent_channels=3, latent_size=(16, 16), first_stage="kl-f4-tiny")


def _tiny_cond() -> LDMConfig:
    """Class-conditional; 16 classes = the embedded dataset's photographs (override for other data)."""
    return LDMConfig(
        unet=_tiny_unet(3, attention="cross", context_dim=128),
        conditioning=ConditioningConfig(kind="class", n_classes=16, embed_dim=128),
        diffusion=_diffusion("faces_bedrooms_cin"),
        latent_channels=3, latent_size=(16, 16), first_stage="kl-f4-tiny",
    )


def _tiny_txt() -> LDMConfig:
    """Text-conditional: 2-layer, 128-d text transformer; <= 1000 WordPiece tokens learned from the captions."""
    return LDMConfig(
        unet=_tiny_unet(3, attention="cross", context_dim=128),
        conditioning=ConditioningConfig(kind="text", tokenizer="learned", vocab_size=1000, max_seq_len=32,
                                        dim=128, depth=2, heads=4, dim_head=32),
        diffusion=_diffusion("txt2img"),
        latent_channels=3, latent_size=(16, 16), first_stage="kl-f4-tiny",
    )


def _tiny_sr() -> LDMConfig:
    """Super-resolution: a 16x16x3 LR image concatenated to 16x16x3 latents."""
    return LDMConfig(
        unet=_tiny_unet(6),
        conditioning=ConditioningConfig(kind="concat", concat_keys=("lr",), concat_channels=(3,)),
        # v-prediction, not the paper's eps: after 300 CPU batches an eps model ignored the LR image at
        # high noise (sampled latents further from the truth than zeros, MSE 1.36 vs variance 0.77);
        # the v model of the same budget lands at MSE 0.12.
        diffusion=_diffusion("churches_sr", parameterization="v"),
        latent_channels=3, latent_size=(16, 16), first_stage="vq-f4-tiny",
    )


def _tiny_inpaint() -> LDMConfig:
    """Inpainting: the masked image's 16x16x3 latent and the 16x16 mask concatenated to 16x16x3 latents."""
    return LDMConfig(
        unet=_tiny_unet(7), conditioning=_INPAINT,
        # x0-prediction, not the paper's eps: the known latents are then a copy of the condition at every t. After
        # 60 CPU batches of 16 (tests/test_train_inpaint.py's cache) the decoded error outside the hole against the
        # first stage's reconstruction was 24.7 (x0), 32.7 (v), 35.8 (eps) in [0, 255] units; untrained: 32-42.
        diffusion=_diffusion("inpainting", loss_type="l1", parameterization="x0"),
        latent_channels=3, latent_size=(16, 16), first_stage="kl-f4-tiny",
    )


def _tiny_semantic() -> LDMConfig:
    """Semantic synthesis: a 64x64 label map of 8 classes (the stand-in's label_maps.n_regions) rescaled to
    16x16x3 and concatenated to 16x16x3 latents; L1 as the paper's."""
    return LDMConfig(
        unet=_tiny_unet(6),
        conditioning=ConditioningConfig(kind="semantic", n_classes=8, rescaler_stages=2, rescaler_channels=3),
        diffusion=_diffusion("semantic", loss_type="l1"),
        latent_channels=3, latent_size=(16, 16), first_stage="kl-f4-tiny",
    )


def _tiny_layout() -> LDMConfig:
    """Layout-conditional: the stand-in's 8 classes, a 17 x 17 grid (one step per latent pixel of 16x16), the 16
    largest boxes (50 tokens), a 2-layer, 128-d box transformer."""
    return LDMConfig(
        unet=_tiny_unet(3, attention="cross", context_dim=128),
        conditioning=ConditioningConfig(kind="layout", n_classes=STAND_IN_CLASSES, grid=17, max_boxes=16, dim=128,
                                        depth=2, heads=4, dim_head=32),
        diffusion=_diffusion("layout", loss_type="l1"),
        latent_channels=3, latent_size=(16, 16), first_stage="kl-f4-tiny",
    )


# The f-sweep of Sec. 4.1 (Tab. 13: ImageNet, class-conditional, one head; Tab. 14: CelebA, unconditional),
# each with its first stage at 256 px. Attention resolutions 32,16,8 (16,8,4 for f16; 8,4,2 for f32) as
# downsampling factors of the z-shape's side. LDM-1 (pixel space) has no first stage here.
_SWEEP: dict[str, Callable[[], LDMConfig]] = {
    "cin-ldm2": lambda: _cin(192, (1, 2, 2, 4, 4), (4, 8, 16), 128, 2, "vq-f2", num_heads=1),
    "cin-ldm4": lambda: _cin(192, (1, 2, 3, 5), (2, 4, 8), 64, 3, "vq-f4", num_heads=1),
    "cin-ldm16": lambda: _cin(256, (1, 2, 4), (1, 2, 4), 16, 8, "vq-f16", num_heads=1),
    "cin-ldm32": lambda: _cin(256, (1, 2, 4), (1, 2, 4), 8, 32, "vq-f32", num_heads=1),
    "celeba-ldm2": lambda: _uncond(192, (1, 2, 2, 4, 4), (4, 8, 16), 128, 2, "vq-f2"),
    "celeba-ldm4": _ldm4_uncond,
    "celeba-ldm8": lambda: _uncond(256, (1, 2, 4), (1, 2, 4), 32, 4, "vq-f8"),
    "celeba-ldm16": lambda: _uncond(256, (1, 2, 4), (1, 2, 4), 16, 8, "vq-f16"),
    "celeba-ldm32": lambda: _uncond(256, (1, 2, 4), (1, 2, 4), 8, 32, "vq-f32"),
}


_PRESETS: dict[str, Callable[[], LDMConfig]] = {
    "celebahq-ldm4": _ldm4_uncond,
    "ffhq-ldm4": _ldm4_uncond,
    "lsun-bedrooms-ldm4": _ldm4_uncond,
    "lsun-churches-ldm8": _churches_ldm8,
    "cin-ldm8": _cin_ldm8,
    "txt2img-ldm8": _txt2img_ldm8,
    "bsr-sr-ldm4": _bsr_sr_ldm4,
    "inpaint-ldm4": _inpaint_ldm4,
    "inpaint-ldm4-big": _inpaint_ldm4_big,
    "semantic-ldm4": _semantic_ldm4,
    "layout-openimages-ldm4": _layout_openimages_ldm4,
    "layout-coco-ldm8": _layout_coco_ldm8,
    **_SWEEP,
    "tiny-uncond": _tiny_uncond,
    "tiny-cond": _tiny_cond,
    "tiny-txt": _tiny_txt,
    "tiny-sr": _tiny_sr,
    "tiny-inpaint": _tiny_inpaint,
    "tiny-semantic": _tiny_semantic,
    "tiny-layout": _tiny_layout,
}


def preset_names() -> list[str]:
    """Names of the known LDM presets."""
    return list(_PRESETS)


def preset_config(name: str) -> LDMConfig:
    """The LDMConfig of a named preset; ValueError listing the known names if unknown."""
    try:
        return _PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown LDM preset {name!r}; known presets: {', '.join(_PRESETS)}") from None
