"""params.yaml sections of the model stages: autoencoder, latent cache, LDM training, evaluation.

Each `recipe` mirrors the `TrainConfig` dataclass of `ldm/` (one definition of
every field, with the reference's values as defaults); the preset's recipe fills
in what params.yaml does not set (stages.params.recipes). Sampler settings mirror
`ldm.diffusion.config.SamplerSettings` the same way.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Strict, field_validator

from ldm.autoencoder.presets import preset_names as autoencoder_presets
from ldm.autoencoder.train_config import TrainConfig as AutoencoderTrainConfig
from ldm.data.loader_config import LoaderSettings
from ldm.diffusion.config import SamplerSettings
from ldm.latent_diffusion.presets import preset_names as ldm_presets
from ldm.latent_diffusion.settings import ModelSettings
from ldm.latent_diffusion.train_config import TrainConfig as LDMTrainConfig
from ldm.latents.config import LatentDtype, Posterior, ScaleRule
from ldm.metrics.names import FeatureExtractorName, MetricName
from ldm.placement import Placement
from stages.params.base import Section, dataclass_section, one_of, to_config

Precision = Literal["auto", "32-true", "bf16-mixed", "16-mixed"]
LoaderParams = dataclass_section(LoaderSettings, "LoaderParams")
PlacementParams = dataclass_section(Placement, "PlacementParams")


class Placed(PlacementParams):  # type: ignore[valid-type, misc]
    """A stage that runs on Lightning's devices: accelerator, devices, num_nodes, strategy (`ldm.trainer.Placement`)."""

    def placement(self) -> Placement:
        """The library's Placement of this stage's processes."""
        return to_config(self, Placement)


class AutoencoderParams(Section):
    """The first stage (Appendix F, Tab. 8): a preset of the reference zoo or a tiny CPU one."""

    preset: str = Field("kl-f4-tiny", description="`ldm.autoencoder.preset_names()` lists them")

    @field_validator("preset")
    @classmethod
    def _known(cls, value: str) -> str:
        return one_of(value, autoencoder_presets())


AutoencoderRecipe = dataclass_section(AutoencoderTrainConfig, "AutoencoderRecipe")


INIT_FROM = "a MODEL_DIR (`ldm import`, `ldm pull`) or model folder to start from; empty: random weights"


class Loading(Section):
    """A stage that reads shards through a DataLoader: its workers, prefetch and pinned memory."""

    loader: LoaderParams = LoaderParams()  # type: ignore[valid-type]

    def loader_settings(self) -> LoaderSettings:
        """The library's DataLoader settings for this stage."""
        return LoaderSettings(**self.loader.model_dump())


class TrainingLoop(Loading):
    """What every training stage's loop takes beside its model: data order, threads, precision."""

    shuffle_buffer: int = Field(1000, ge=0, le=1_000_000, description="samples; 0 keeps shard order")
    seed: int = Field(0, ge=0, description="weights init and data order")
    threads: int = Field(2, ge=1, le=256, description="CPU threads for torch")
    precision: Precision = "auto"
    resume: bool = Field(True, description="continue a run of the same settings from its last checkpoint; false: start afresh")


class TrainAutoencoderParams(TrainingLoop):
    """Stage `train_autoencoder`: batches, checkpoints, offline weights and the recipe (Eq. 25)."""

    steps: int = Field(500, ge=1, le=10_000_000, description="training batches")
    batch_size: int = Field(16, ge=1, le=4096)
    val_every: int = Field(5000, ge=1, description="batches between validation passes")
    checkpoint_every: int = Field(5000, ge=1, description="batches between checkpoints")
    grid_images: int = Field(8, ge=1, le=64, description="originals | reconstructions in the report PNG")
    vgg_weights: str = Field("", description="LPIPS VGG16 file; empty: the torch hub cache")
    inception_weights: str = Field("", description="rFID Inception file; empty: torch-fidelity's cache")
    recipe: AutoencoderRecipe = AutoencoderRecipe()  # type: ignore[valid-type]
    init_from: str = Field("", description=INIT_FROM)

    def train_config(self) -> AutoencoderTrainConfig:
        """The library's TrainConfig for this run (a cosine decay with decay_steps 0 spans `steps`)."""
        return AutoencoderTrainConfig(**self.recipe.model_dump()).resolved(self.steps)


class CacheLatentsParams(Loading, Placed):
    """Stage `cache_latents`: encode the shards once and measure the latent scale (App. F, C.1)."""

    posterior: Posterior = Field("mode", description="KL: the posterior mean, or a sample seeded per key")
    seed: int = Field(0, ge=0, description="posterior samples")
    dtype: LatentDtype = "float16"
    batch_size: int = Field(64, ge=1, le=4096, description="images per encoder call")
    pairs: bool = Field(True, description="also cache the degrade stage's HR latents with their LR images")
    masks: bool = Field(True, description="also cache each image's masked-image latent and latent mask (inpainting), "
                                           "from the masks stage's shards (--masks)")
    label_maps: bool = Field(True, description="zip the label_maps stage's maps and layouts into the image latents")
    scale_rule: ScaleRule = Field("auto", description="auto: 1/dataset std for KL, 1.0 for VQ")
    scale_value: float = Field(1.0, gt=0.0, description="the factor when scale_rule is fixed")
    std_tolerance: float = Field(0.02, gt=0.0, le=1.0, description="warn when the scaled std is further than this from 1")
    threads: int = Field(2, ge=1, le=256, description="CPU threads for torch")
    workers: int = Field(1, ge=1, le=256, description="on the CPU: > 1 encodes shards on the task pool; the bytes do not depend on it")

    runtime = frozenset({"workers"})


LDMRecipe = dataclass_section(LDMTrainConfig, "LDMRecipe")
ModelParams = dataclass_section(ModelSettings, "ModelParams")


class TrainLDMParams(TrainingLoop, Placed):
    """Stage `train_ldm`: an LDM preset trained on the cached latents (Eq. 2, D.1), on one device or many (DDP)."""

    preset: str = Field("tiny-cond", description="`ldm.latent_diffusion.preset_names()` lists them")
    first_stage: str = Field("", description="the autoencoder preset the LDM pairs with; empty: the preset's own")
    n_classes: int = Field(0, ge=0, le=100_000, description="class models: classes; 0: the preset's")
    steps: int = Field(250, ge=1, le=10_000_000, description="optimizer steps")
    batch_size: int = Field(32, ge=1, le=4096, description="samples per batch on one device (rank)")
    val_every: int = Field(5000, ge=1, description="batches between validation passes")
    checkpoint_every: int = Field(5000, ge=1, description="batches between checkpoints")
    recipe: LDMRecipe = LDMRecipe()  # type: ignore[valid-type]
    model: ModelParams = ModelParams()  # type: ignore[valid-type]
    init_from: str = Field("", description=INIT_FROM)

    def train_config(self) -> LDMTrainConfig:
        """The library's TrainConfig for this run (a cosine decay with decay_steps 0 spans `steps`)."""
        return LDMTrainConfig(**self.recipe.model_dump()).resolved(self.steps)

    def model_settings(self) -> ModelSettings:
        """The research settings applied on top of the preset."""
        return ModelSettings(**self.model.model_dump())

    @field_validator("preset")
    @classmethod
    def _known(cls, value: str) -> str:
        return one_of(value, ldm_presets())

    @field_validator("first_stage")
    @classmethod
    def _known_first_stage(cls, value: str) -> str:
        return one_of(value, autoencoder_presets(), empty_ok=True)


class TrainSRParams(TrainLDMParams):
    """Stage `train_sr`: LDM-BSR, the LR image concatenated to the HR latent (Sec. C.7.1).

    Takes the loop settings of `train_ldm` it does not set (stages.params.recipes.INHERITS).
    """

    preset: str = Field("tiny-sr", description="tiny-sr | bsr-sr-ldm4")


class TrainInpaintParams(TrainLDMParams):
    """Stage `train_inpaint`: the masked image's latent and the mask concatenated to the latent (Sec. 4.5, D.2.2).

    Takes the loop settings of `train_ldm` it does not set (stages.params.recipes.INHERITS).
    """

    preset: str = Field("tiny-inpaint", description="tiny-inpaint | inpaint-ldm4 | inpaint-ldm4-big")


class TrainSemanticParams(TrainLDMParams):
    """Stage `train_semantic`: the one-hot label map through a learned spatial rescaler, concatenated to the latent
    (Sec. 4.3.2). Takes the loop settings of `train_ldm` it does not set (stages.params.recipes.INHERITS);
    `n_classes` (0: the preset's) must cover the label maps' ids (label_maps)."""

    preset: str = Field("tiny-semantic", description="tiny-semantic | semantic-ldm4")


class TrainLayoutParams(TrainLDMParams):
    """Stage `train_layout`: layout-to-image, the boxes of each latent's image as tokens (Sec. 4.3.1, D.2.1).

    Takes the loop settings of `train_ldm` it does not set (stages.params.recipes.INHERITS).
    """

    preset: str = Field("tiny-layout", description="tiny-layout | layout-openimages-ldm4 | layout-coco-ldm8")
    n_classes: int = Field(0, ge=0, le=100_000, description="box classes; 0: the preset's")


SamplingParams = dataclass_section(SamplerSettings, "SamplingParams")


class EvaluateLayoutParams(Section):
    """Stage `evaluate_layout`: val layouts | real images | samples of several seeds (Sec. 4.3.1, Fig. 15)."""

    layouts: int = Field(6, ge=1, le=256, description="val layouts drawn, one row each (the first with boxes)")
    seeds: int = Field(3, ge=1, le=16, description="samples per layout, from seeds seed .. seed + seeds - 1")
    seed: int = Field(0, ge=0, description="the first seed; seed s starts from the same noise under every layout")
    batch_size: int = Field(16, ge=1, le=4096)
    sampling: SamplingParams = SamplingParams()  # type: ignore[valid-type]
    feature_extractor: FeatureExtractorName = Field(
        "inception-v3-compat", description="FID's features (Tab. 9); random-conv: a seeded stand-in, smoke runs only")
    inception_weights: str = Field("", description="Inception file; empty: torch-fidelity's file in $TORCH_HOME/hub/checkpoints")
    threads: int = Field(2, ge=1, le=256, description="CPU threads for torch")


class EvaluateParams(Loading):
    """Stage `evaluate`: samples scored with torch-fidelity, SR against bicubic, the autoencoder's rFID."""

    samples: int = Field(64, ge=4, le=1_000_000, description="generated images scored (the paper: 50k)")
    batch_size: int = Field(32, ge=1, le=4096)
    seed: int = Field(0, ge=0, description="sample i starts from seed + i")
    sampling: SamplingParams = SamplingParams(guidance_scale=2.0)  # type: ignore[valid-type]
    sr_samples: int = Field(32, ge=1, le=1_000_000, description="val pairs super-resolved")
    sr_sampling: SamplingParams = SamplingParams()  # type: ignore[valid-type]
    sr_reference_split: Literal["val", "train"] = Field(
        "val", description="SR FID reference (Tab. 11): val = the HR images of the val pairs, train = the train shards")
    feature_extractor: FeatureExtractorName = Field(
        "inception-v3-compat", description="random-conv: a seeded stand-in, for smoke runs only")
    inception_weights: str = Field("", description="Inception file; empty: torch-fidelity's file in $TORCH_HOME/hub/checkpoints")
    metrics: Annotated[tuple[MetricName, ...], Strict(False)] = ("fid", "kid", "isc", "prc")
    reference_split: Literal["train", "val"] = Field("train", description="the set generated samples are scored against")
    grid_images: int = Field(32, ge=1, le=256)
    threads: int = Field(2, ge=1, le=256, description="CPU threads for torch")


class EvaluateSemanticParams(Section):
    """Stage `evaluate_semantic`: samples from val label maps at the training size and `scale` x it (Sec. 4.3.2)."""

    maps: int = Field(4, ge=1, le=256, description="val label maps sampled, spread over the split")
    scale: int = Field(2, ge=2, le=8, description="the larger samples' side over the training side (Fig. 13, 23, 24)")
    seed: int = Field(0, ge=0, description="sample i starts from seed + i")
    batch_size: int = Field(8, ge=1, le=4096)
    sampling: SamplingParams = SamplingParams()  # type: ignore[valid-type]
    threads: int = Field(2, ge=1, le=256, description="CPU threads for torch")
