"""params.yaml section of the inpainting evaluation (Sec. 4.5, Tab. 7): stage `evaluate_inpaint`."""

from __future__ import annotations

from pydantic import Field, field_validator

from ldm.metrics.names import FeatureExtractorName, PerceptualNetName
from stages.params.models import Loading, SamplingParams


class EvaluateInpaintParams(Loading):
    """Stage `evaluate_inpaint`: val images inpainted by models/ldm_inpaint beside the blurred-fill baseline, scored
    by FID against the val originals and LPIPS, PSNR and SSIM against each original (Tab. 7)."""

    samples: int = Field(32, ge=4, le=1_000_000, description="val images inpainted (the paper: 2k); FID needs >= 4")
    batch_size: int = Field(16, ge=1, le=4096)
    seed: int = Field(0, ge=0, description="sample i starts from noise seeded with seed + i")
    sampling: SamplingParams = SamplingParams()  # type: ignore[valid-type]
    feature_extractor: FeatureExtractorName = Field(
        "inception-v3-compat", description="random-conv: a seeded stand-in, for smoke runs only")
    inception_weights: str = Field("", description="Inception file; empty: torch-fidelity's file in $TORCH_HOME/hub/checkpoints")
    lpips_net: PerceptualNetName = Field("vgg16", description="random-vgg16: a seeded stand-in, for smoke runs only")
    vgg_weights: str = Field("", description="LPIPS VGG16 file; empty: the torch hub cache")
    grid_images: int = Field(8, ge=1, le=64, description="val rows in reports/evaluate_inpaint/inpaint.png")
    threads: int = Field(2, ge=1, le=256, description="CPU threads for torch")

    @field_validator("sampling")
    @classmethod
    def _no_guidance(cls, value: SamplingParams) -> SamplingParams:  # type: ignore[valid-type]
        if value.guidance_scale != 1.0:
            raise ValueError("guidance_scale must be 1.0: the inpainting model is concat-conditioned and has no "
                             f"unconditional model to guide away from, got {value.guidance_scale}")
        return value
