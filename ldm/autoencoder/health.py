"""Codebook health of a VQ autoencoder (latent moments: ldm.latents.moments; PSNR/SSIM: ldm.metrics.quality)."""

from __future__ import annotations

import torch

from ldm.autoencoder.quantize import perplexity

# Codebook collapse: the encoder reaches only a few codes, so |Z| overstates the latent's
# capacity (van den Oord et al. 2017; Yu et al. 2022, ViT-VQGAN Sec. 3.2). With dead-code
# restarts or an EMA codebook nearly every code stays in use, so these bounds are loose.
DEAD_FRACTION_WARN = 0.25  # warn when more than a quarter of the codes are never picked on val
PERPLEXITY_FRACTION_WARN = 0.1  # warn when the usage perplexity is below a tenth of |Z|
# Below this many val vectors per code even a uniform codebook leaves codes unpicked
# (expected dead fraction exp(-M/|Z|) for M vectors), so usage cannot show a collapse.
MIN_VECTORS_PER_CODE = 4


def dead_code_fraction(usage: torch.Tensor) -> float:
    """Fraction of codebook entries never picked, from usage counts [|Z|]."""
    return float((usage == 0).sum()) / usage.numel()


def codebook_health(usage: torch.Tensor) -> dict[str, float | int]:
    """Size, used codes, dead fraction and perplexity of code-usage counts [|Z|]."""
    return {"size": usage.numel(), "used": int((usage > 0).sum()), "dead_fraction": round(dead_code_fraction(usage), 4),
            "perplexity": round(float(perplexity(usage)), 2)}


def codebook_warnings(usage: torch.Tensor) -> list[str]:
    """Warnings when code-usage counts [|Z|] show a collapsed codebook; none when too few vectors to tell."""
    size, vectors = usage.numel(), int(usage.sum())
    if vectors < MIN_VECTORS_PER_CODE * size:
        return []
    dead, ppl = dead_code_fraction(usage), float(perplexity(usage))
    fix = ("; restart dead codes (train_autoencoder.recipe.vq_restart_every > 0) or pick a preset whose"
           " codebook is EMA-updated or l2-normalised (AutoencoderConfig.codebook_ema, codebook_l2)")
    warnings = []
    if dead > DEAD_FRACTION_WARN:
        warnings.append(f"codebook collapse: {dead:.0%} of {size} codes unused on val (warn above"
                        f" {DEAD_FRACTION_WARN:.0%})" + fix)
    if ppl < PERPLEXITY_FRACTION_WARN * size:
        warnings.append(f"codebook collapse: usage perplexity {ppl:.1f} is below {PERPLEXITY_FRACTION_WARN:.0%}"
                        f" of the {size} codes" + fix)
    return warnings
