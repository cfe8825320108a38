"""Our side of an import or export: a preset's configs, state-dict keys, and the MODEL_DIR (ldm/model_dir.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ldm.autoencoder.checkpoint import AutoencoderCard, autoencoder_sha256, load_autoencoder, save_autoencoder
from ldm.autoencoder.config import AutoencoderConfig
from ldm.autoencoder.model import Autoencoder
from ldm.autoencoder.presets import preset_config as autoencoder_preset, preset_names as autoencoder_presets
from ldm.config import Config
from ldm.data.shards import AtomicFolder
from ldm.errors import InputNotFound, InvalidInput
from ldm.latent_diffusion.checkpoint import LDMCard, LoadedLDM, load_ldm, save_ldm
from ldm.latent_diffusion.config import LDMConfig
from ldm.latent_diffusion.model import LatentDiffusionModel
from ldm.interchange.layout import autoencoder_blocks
from ldm.interchange.mapping import Format, export_state, plan
from ldm.latent_diffusion.presets import preset_config as ldm_preset, preset_names as ldm_presets
from ldm.latent_diffusion.settings import paired_config
from ldm.masks.config import MASK, MASKED_IMAGE
from ldm.model_dir import AUTOENCODER, LDM, LDM_INPAINT, LDM_SR

# The EMA codebook's running statistics: training state, not in the reference's or diffusers' layout; an import
# restarts them as the quantizer's constructor does (each code the average of one vector, itself).
CODEBOOK_STATS = ("quantizer.ema_count", "quantizer.ema_sum")


@dataclass(frozen=True)
class Target:
    """The configs an import fills: a first stage, and the LDM when the preset is one."""

    autoencoder: AutoencoderConfig
    autoencoder_preset: str
    ldm: LDMConfig | None = None
    ldm_preset: str = ""

    @property
    def ldm_folder(self) -> str:
        """`ldm_inpaint` for an inpainting model, `ldm_sr` for a super-resolution (other concat) model, else `ldm`."""
        if self.ldm is None or self.ldm.conditioning.kind != "concat":
            return LDM
        return LDM_INPAINT if tuple(self.ldm.conditioning.concat_keys) == (MASKED_IMAGE, MASK) else LDM_SR


@dataclass(frozen=True)
class ImportReport(Config):
    """What an import took from where: written into both cards' lineage."""

    section = "import"

    format: str
    source: str
    preset: str
    weights: str = "raw"  # "ema" when the source held an EMA copy and it was taken
    scale_factor: float = 1.0
    scale_factor_from: str = ""
    schedule_from: str = ""
    tensors: int = 0


def resolve_preset(name: str, first_stage: str | None = None) -> Target:
    """An LDM preset with its first stage (or `first_stage`, the LDM fitted to it at the preset's image size, as
    `train_ldm.first_stage` does), or a first-stage preset; errors list the presets."""
    if name in ldm_presets():
        cfg = ldm_preset(name)
        if first_stage is None or first_stage == cfg.first_stage:
            return Target(autoencoder_preset(cfg.first_stage), cfg.first_stage, cfg, name)
        if first_stage not in autoencoder_presets():
            raise InvalidInput(f"--first-stage {first_stage!r} is not a first-stage preset; one of:"
                               f" {', '.join(autoencoder_presets())}")
        ae, side = autoencoder_preset(first_stage), cfg.latent_size[0] * autoencoder_preset(cfg.first_stage).downsample_factor
        try:
            return Target(ae, first_stage, paired_config(cfg, first_stage, ae, side), name)
        except ValueError as exc:
            raise InvalidInput(f"--first-stage {first_stage}: {exc}") from None
    if name in autoencoder_presets():
        if first_stage is not None:
            raise InvalidInput(f"--first-stage is for LDM presets; {name} is a first stage itself")
        return Target(autoencoder_preset(name), name)
    raise InvalidInput(f"--preset {name!r} is not a preset; LDM presets: {', '.join(ldm_presets())};"
                       f" first-stage presets: {', '.join(autoencoder_presets())}")


def matching_first_stages(theirs: Mapping[str, Tensor], fmt: Format, prefix: str) -> list[str]:
    """The first-stage presets whose every tensor, named in `fmt` under `prefix`, has the shape `theirs` holds."""
    found = {k: tuple(v.shape) for k, v in theirs.items() if k.startswith(prefix)}
    names = []
    for name in autoencoder_presets():
        cfg = autoencoder_preset(name)
        with torch.device("meta"):
            state = {k: v for k, v in Autoencoder(cfg).state_dict().items() if k not in CODEBOOK_STATS}
        mapped = export_state(state, plan(autoencoder_blocks(cfg), fmt, state, prefix=prefix))
        if {k: tuple(v.shape) for k, v in mapped.items()} == found:
            names.append(name)
    return names


def _keys(factory: Callable[[], nn.Module]) -> list[str]:
    with torch.device("meta"):  # no memory for the weights: only the names are wanted
        return list(factory().state_dict())


def autoencoder_keys(cfg: AutoencoderConfig) -> list[str]:
    """The state-dict keys of our first stage, without the EMA codebook's statistics."""
    return [k for k in _keys(lambda: Autoencoder(cfg)) if k not in CODEBOOK_STATS]


def ldm_keys(cfg: LDMConfig, prefix: str) -> list[str]:
    """The state-dict keys of our LDM under `prefix` (`unet.` or `cond_model.`)."""
    return [k for k in _keys(lambda: LatentDiffusionModel(cfg)) if k.startswith(prefix)]


def with_codebook_stats(cfg: AutoencoderConfig, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Add the EMA codebook's statistics to an imported state (only configs with codebook_ema have them)."""
    if cfg.kind == "vq" and cfg.codebook_ema > 0:
        codes = state["quantizer.embedding.weight"]
        state = {**state, "quantizer.ema_count": torch.ones(codes.shape[0]), "quantizer.ema_sum": codes.clone()}
    return state


def with_schedule(cfg: LDMConfig, scale_factor: float, **diffusion: Any) -> LDMConfig:
    """The LDM config with the source's scale factor and schedule settings."""
    return dataclasses.replace(cfg, scale_factor=scale_factor, diffusion=dataclasses.replace(cfg.diffusion, **diffusion))


def write_model_dir(out: Path, target: Target, ae_state: dict[str, Tensor], report: ImportReport,
                    ldm_state: dict[str, Tensor] | None = None, tokenizer: Any = None) -> None:
    """Write `out` with autoencoder/ (and ldm/ or ldm_sr/); `out` must not hold anything yet and appears only
    when complete."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInput(f"-o {out}: exists and is not empty; import into a new folder (a model folder is"
                           " written whole: its first stage and LDM belong together)")
    lineage = {"import": report.to_dict()}
    autoencoder = Autoencoder(target.autoencoder)
    autoencoder.load_state_dict(with_codebook_stats(target.autoencoder, ae_state), strict=True)
    with AtomicFolder(out) as staging:
        save_autoencoder(staging / AUTOENCODER, autoencoder,
                         AutoencoderCard(model=target.autoencoder, preset=target.autoencoder_preset, lineage=lineage))
        if target.ldm is None or ldm_state is None:
            return
        model = LatentDiffusionModel(target.ldm)
        model.load_state_dict(ldm_state, strict=True)
        sr_scale = target.autoencoder.downsample_factor if target.ldm_folder == LDM_SR else 0
        card = LDMCard(model=target.ldm, preset=target.ldm_preset, weights=report.weights,  # type: ignore[arg-type]
                       autoencoder_sha256=autoencoder_sha256(staging / AUTOENCODER),
                       autoencoder_preset=target.autoencoder_preset, sr_scale=sr_scale, lineage=lineage)
        save_ldm(staging / target.ldm_folder, model, card, tokenizer)


@dataclass
class ModelDir:
    """A MODEL_DIR as read for export: the first stage and, unless only it is asked for, one LDM."""

    autoencoder: Autoencoder
    autoencoder_card: AutoencoderCard
    ldm: LoadedLDM | None

    def state(self, prefix: str) -> dict[str, Tensor]:
        """The LDM's tensors under `prefix` (`unet.`, `cond_model.`)."""
        assert self.ldm is not None
        return {k: v for k, v in self.ldm.model.state_dict().items() if k.startswith(prefix)}

    def autoencoder_state(self) -> dict[str, Tensor]:
        """The first stage's tensors, without the EMA codebook's statistics."""
        return {k: v for k, v in self.autoencoder.state_dict().items() if k not in CODEBOOK_STATS}


def read_model_dir(folder: Path, component: str | None) -> ModelDir:
    """The first stage and the LDM named by `component` (ldm, ldm_sr; autoencoder: the first stage alone;
    None: ldm/ if present, else ldm_sr/, else the first stage alone)."""
    if not folder.is_dir():
        raise InputNotFound(f"{folder}: no such model folder (it holds autoencoder/ and ldm/ or ldm_sr/)")
    if component is None:
        component = next((c for c in (LDM, LDM_SR, LDM_INPAINT) if (folder / c).is_dir()), AUTOENCODER)
    autoencoder, card = load_autoencoder(folder / AUTOENCODER)
    loaded = None if component == AUTOENCODER else load_ldm(folder / component)
    return ModelDir(autoencoder, card, loaded)

