"""The training recipe of every LDM preset (Tab. 12-15, D.1), beside its architecture in `presets.py`.

Learning rates: where the reference configuration scales its `base_learning_rate`
(`--scale_lr`, on by default), the recipe keeps that base with `scale_lr`, so the
effective rate is base x batch x devices x accumulation and equals the paper's
number on one device (CelebA-HQ: 2e-6 x 48 = 9.6e-5). Where the paper states only
the effective rate (Tab. 13, 14) or the reference sets it directly (Churches,
text-to-image), the recipe sets it with `scale_lr` off. EMA 0.9999 and AdamW with
weight decay 0.01 are the `TrainConfig` defaults, as in the reference.
"""

from __future__ import annotations

from ldm.latent_diffusion.presets import preset_names
from ldm.latent_diffusion.train_config import TrainConfig
from ldm.recipes import Recipe, check_recipes, lookup

_REF = "CompVis/latent-diffusion configs/latent-diffusion"
# Classifier-free guidance (Tab. 10's LDM-4-G, the -G text model) samples with the
# condition dropped; training must drop it too (the reference never did: REFERENCE.md).
_GUIDED = 0.1


def _scaled(base_lr: float, **train: object) -> dict[str, object]:
    return {"lr": base_lr, "scale_lr": True, **train}


# The measured CPU recipe of the tiny presets on the embedded default: 150 batches of 32 (train_ldm, train_sr
# and train_inpaint: 1.2 to 1.6 min each on 2 cores, `make run` within 18 min), lr 1e-3 with a short warm-up, EMA 0.999.
_CPU = {"lr": 1.0e-3, "warmup_steps": 20, "ema_decay": 0.999, "grad_clip": 1.0}
_CPU_SOURCE = "measured on 2 CPU cores with the embedded photographs"


def _cpu(p_uncond: float) -> Recipe:
    return Recipe(batch_size=32, steps=150, val_every=75, checkpoint_every=75, source=_CPU_SOURCE,
                  train={**_CPU, "p_uncond": p_uncond})


def _tab13(batch: int, lr: float) -> Recipe:
    return Recipe(batch_size=batch, steps=2_000_000, source="Tab. 13", train={"lr": lr, "p_uncond": _GUIDED})


def _tab14(batch: int, lr: float) -> Recipe:
    return Recipe(batch_size=batch, steps=500_000, source="Tab. 14", train={"lr": lr})


RECIPES: dict[str, Recipe] = {
    "celebahq-ldm4": Recipe(48, 410_000, f"Tab. 12; {_REF}/celebahq-ldm-vq-4.yaml", _scaled(2.0e-6)),
    "ffhq-ldm4": Recipe(42, 635_000, f"Tab. 12; {_REF}/ffhq-ldm-vq-4.yaml", _scaled(2.0e-6)),
    "lsun-bedrooms-ldm4": Recipe(48, 1_900_000, f"Tab. 12; {_REF}/lsun_bedrooms-ldm-vq-4.yaml", _scaled(2.0e-6)),
    "lsun-churches-ldm8": Recipe(96, 500_000, f"Tab. 12; {_REF}/lsun_churches-ldm-kl-8.yaml (lr not scaled)",
                                 {"lr": 5.0e-5, "warmup_steps": 10_000}),
    "cin-ldm8": Recipe(64, 2_000_000, f"Tab. 13 LDM-8; {_REF}/cin-ldm-vq-f8.yaml", _scaled(1.0e-6, p_uncond=_GUIDED)),
    "txt2img-ldm8": Recipe(680, 390_000, "Tab. 15 text-to-image; reference txt2img-1p4B-eval.yaml (lr not scaled)",
                           {"lr": 1.0e-4, "warmup_steps": 10_000, "p_uncond": _GUIDED}),
    "bsr-sr-ldm4": Recipe(64, 860_000, "Tab. 15 super-resolution; reference bsr_sr config", _scaled(1.0e-6)),
    # Tab. 15 prints 1.0e-6, the reference's base rate (its inpainting_big config also multiplies the rate by a
    # warm-up/cosine factor peaking at 0.1, which TrainConfig does not model); L1 is the preset's loss_type.
    "inpaint-ldm4": Recipe(128, 360_000, "Tab. 15 inpainting; reference inpainting_big config", _scaled(1.0e-6)),
    "inpaint-ldm4-big": Recipe(128, 360_000, "Tab. 15 inpainting; reference inpainting_big config", _scaled(1.0e-6)),
    "semantic-ldm4": Recipe(48, 360_000, "Tab. 15 semantic synthesis (landscapes); REFERENCE.md", _scaled(1.0e-6)),
    # Layout-to-image: 2.0e-6 x 24 and 1.0e-6 x 48 are Tab. 15's 4.8e-5; COCO's dropout 0.1 is in its preset.
    "layout-openimages-ldm4": Recipe(24, 4_400_000, "Tab. 15 layout-to-image OpenImages; reference "
                                     "layout2img-openimages256 config", _scaled(2.0e-6)),
    "layout-coco-ldm8": Recipe(48, 170_000, "Tab. 15 layout-to-image COCO", _scaled(1.0e-6)),
    # The f-sweep of Sec. 4.1: ImageNet class-conditional (Tab. 13), CelebA unconditional (Tab. 14).
    "cin-ldm2": _tab13(9, 6.3e-5),
    "cin-ldm4": _tab13(40, 8.0e-5),
    "cin-ldm16": _tab13(112, 4.5e-5),
    "cin-ldm32": _tab13(112, 4.5e-5),
    "celeba-ldm2": _tab14(11, 1.1e-4),
    "celeba-ldm4": _tab14(48, 9.6e-5),
    "celeba-ldm8": _tab14(96, 9.6e-5),
    "celeba-ldm16": _tab14(128, 1.3e-4),
    "celeba-ldm32": _tab14(128, 1.3e-4),
    "tiny-uncond": _cpu(p_uncond=0.0),
    "tiny-cond": _cpu(p_uncond=0.1),
    "tiny-txt": _cpu(p_uncond=0.1),
    "tiny-sr": _cpu(p_uncond=0.0),  # concat conditioning has no null condition
    "tiny-inpaint": _cpu(p_uncond=0.0),
    "tiny-semantic": _cpu(p_uncond=0.0),  # nor has a label map
    "tiny-layout": _cpu(p_uncond=0.0),  # nor does a layout (no classifier-free guidance for it in the paper)
}


def recipe(name: str) -> Recipe:
    """The training recipe of an LDM preset; ValueError listing the known names if unknown."""
    return lookup(RECIPES, name, "LDM")


check_recipes(RECIPES, TrainConfig, preset_names())
