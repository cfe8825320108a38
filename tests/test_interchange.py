"""Models in and out: ours -> diffusers / reference -> ours bit for bit, diffusers' classes computing what ours do."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
import yaml

from ldm.autoencoder.model import Autoencoder
from ldm.autoencoder.presets import preset_config as ae_preset
from ldm.errors import InvalidInput
from ldm.interchange.bundle import ImportReport, Target, read_model_dir, write_model_dir
from ldm.interchange.diffusers_io import export_diffusers, import_diffusers
from ldm.interchange.reference import export_reference, import_reference
from ldm.latent_diffusion.model import LatentDiffusionModel
from ldm.latent_diffusion.presets import preset_config as ldm_preset
from ldm.latent_diffusion.presets import preset_names as ldm_preset_names

RTOL = 1e-5  # fp32: max |ours - diffusers| / max |ours|


def _small_unet(unet, **kw):
    return dataclasses.replace(unet, model_channels=32, num_head_channels=16, num_heads=-1, norm_groups=8,
                               use_checkpoint=False, **kw)


KL = dataclasses.replace(ae_preset("kl-f8"), ch=32, norm_groups=8, attn_levels=(3,))  # reduced width, attention at f8
VQ = dataclasses.replace(ae_preset("vq-f4"), ch=32, norm_groups=8, n_embed=64)
VQ8 = dataclasses.replace(VQ, ch_mult=(1, 2, 2, 4), z_channels=4, embed_dim=4)


def _case(name: str) -> Target:
    """Presets at reduced width: unconditional, class (cross-attention), concat SR, text."""
    if name == "uncond":
        c = ldm_preset("celebahq-ldm4")
        return Target(VQ, "vq-f4", dataclasses.replace(c, unet=_small_unet(c.unet), latent_size=(16, 16),
                                                    scale_factor=0.5), name)
    if name == "sr":
        c = ldm_preset("bsr-sr-ldm4")
        return Target(VQ, "vq-f4", dataclasses.replace(c, unet=_small_unet(c.unet), latent_size=(16, 16)), name)
    if name == "class":
        c = ldm_preset("cin-ldm8")
        cond = dataclasses.replace(c.conditioning, n_classes=10, embed_dim=64)
        return Target(VQ8, "vq-f8", dataclasses.replace(c, unet=_small_unet(c.unet, context_dim=64), conditioning=cond,
                                                       latent_size=(16, 16)), name)
    c = ldm_preset("txt2img-ldm8")
    cond = dataclasses.replace(c.conditioning, dim=64, depth=2, heads=2, dim_head=32)
    unet = dataclasses.replace(c.unet, model_channels=32, num_heads=2, norm_groups=8, context_dim=64,
                               use_checkpoint=False)
    return Target(KL, "kl-f8", dataclasses.replace(c, unet=unet, conditioning=cond, latent_size=(16, 16),
                                                   scale_factor=0.7), name)


def _random(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in module.state_dict().items()}


def _model_dir(tmp_path: Path, target: Target) -> Path:
    tokenizer = None
    if target.ldm is not None and target.ldm.conditioning.kind == "text":
        from ldm.conditioning.tokenizer import load_bert_tokenizer

        tokenizer = load_bert_tokenizer()
    ldm_state = _random(LatentDiffusionModel(target.ldm), 2) if target.ldm is not None else None
    ae_state = _random(Autoencoder(target.autoencoder), 1)
    if target.autoencoder.codebook_ema:
        ae_state["quantizer.ema_count"] = torch.ones_like(ae_state["quantizer.ema_count"])
        ae_state["quantizer.ema_sum"] = ae_state["quantizer.embedding.weight"].clone()
    weights = "ema" if target.ldm_preset == "class" else "raw"  # an EMA model is exported with the reference's EMA copy
    write_model_dir(tmp_path / "models", target, ae_state, ImportReport("test", "random", "test", weights), ldm_state,
                    tokenizer)
    return tmp_path / "models"


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    model = read_model_dir(folder, None)
    state = {f"ae.{k}": v for k, v in model.autoencoder.state_dict().items()}
    return state if model.ldm is None else {**state, **model.ldm.model.state_dict()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"{len(differing)} tensors differ, e.g. {differing[:3]}"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """case -> (target, MODEL_DIR with random weights, its diffusers export, its reference export), built once."""
    cache: dict[str, tuple[Target, Path, Path, Path]] = {}

    def get(case: str) -> tuple[Target, Path, Path, Path]:
        if case not in cache:
            root = tmp_path_factory.mktemp(case)
            target = _case(case)
            models = _model_dir(root, target)
            cache[case] = (target, models, export_diffusers(models, root / "diffusers"),
                           export_reference(models, root / "reference", yaml.safe_dump))
        return cache[case]

    return get


@pytest.mark.parametrize("case", ["uncond", "sr", "class", "text"])
def test_round_trips_are_bit_exact(tmp_path, exported, case):
    target, models, diffusers_dir, ckpt = exported(case)
    import_diffusers(diffusers_dir, target, tmp_path / "from_diffusers")
    _same(_tensors(models), _tensors(tmp_path / "from_diffusers"))
    report = import_reference(ckpt, target, tmp_path / "from_reference")
    _same(_tensors(models), _tensors(tmp_path / "from_reference"))
    assert report.schedule_from == "betas in the checkpoint" and report.scale_factor_from == "scale_factor in the checkpoint"
    card = read_model_dir(tmp_path / "from_reference", None).ldm.card
    assert card.model == target.ldm and card.lineage["import"]["format"] == "reference"
    assert report.weights == card.weights == read_model_dir(models, None).ldm.card.weights


@pytest.mark.parametrize("ae", [KL, dataclasses.replace(ae_preset("vq-f4-tiny"))], ids=["kl", "vq-ema"])
def test_first_stage_alone_round_trips(tmp_path, ae):
    target = Target(ae, "first-stage")
    models = _model_dir(tmp_path, target)
    for fmt, export, load in (("diffusers", export_diffusers, import_diffusers),
                              ("reference", lambda *a: export_reference(*a, yaml.safe_dump), import_reference)):
        out = export(models, tmp_path / fmt)
        source = out if fmt == "diffusers" else tmp_path / fmt / "model.ckpt"
        load(source, target, tmp_path / f"back-{fmt}")
        _same(_tensors(models), _tensors(tmp_path / f"back-{fmt}"))


def _close(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    """Assert max |ours - theirs| <= RTOL * max |ours|; the numbers are printed (`pytest -s` shows them)."""
    diff, scale = float((ours - theirs).abs().max()), float(ours.abs().max())
    measured = f"{what}: max |ours - theirs| = {diff:.3g}, {diff / scale:.3g} of max |ours| {scale:.3g}"
    print(measured)
    assert diff <= RTOL * scale, measured


@pytest.mark.parametrize("case", ["uncond", "sr", "class", "text"])
def test_diffusers_classes_compute_what_ours_do(exported, case):
    diffusers = pytest.importorskip("diffusers")
    target, models, folder, _ = exported(case)
    model = read_model_dir(models, None)
    ldm = model.ldm.model
    vae_class = "VQModel" if target.autoencoder.kind == "vq" else "AutoencoderKL"
    vae = getattr(diffusers, vae_class).from_pretrained(folder / "vqvae").eval()
    unet_class = "UNet2DConditionModel" if target.ldm.unet.attention == "cross" else "UNet2DModel"
    unet = getattr(diffusers, unet_class).from_pretrained(folder / "unet").eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    z = torch.randn(2, ldm.config.unet.in_channels, 16, 16, generator=g)
    t = torch.tensor([3, 801])
    context = None
    if case == "class":
        context = model.ldm.model.cond_model(torch.tensor([1, 10]))  # a label and the null class
    if case == "text":
        from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import LDMBertModel

        ids = torch.randint(0, 30522, (2, 77), generator=g)
        context = ldm.cond_model(ids)
        with torch.no_grad():
            _close(context, LDMBertModel.from_pretrained(folder / "bert").eval()(ids)[0], "LDMBert")
    with torch.no_grad():
        encoded = model.autoencoder.encode_mode(x)
        theirs = vae.encode(x)
        _close(encoded, theirs.latents if vae_class == "VQModel" else theirs.latent_dist.mode(), f"{vae_class}.encode")
        _close(model.autoencoder.decode(encoded), vae.decode(encoded).sample, f"{vae_class}.decode")
        kwargs = {"encoder_hidden_states": context} if context is not None else {}
        _close(ldm.unet(z, t, context), unet(z, t, **kwargs).sample, unet_class)


@pytest.mark.parametrize("case", ["uncond", "text"])
def test_diffusers_pipeline_samples_what_we_sample_with_the_references_last_step(exported, case):
    """The exported folder in LDMPipeline / LDMTextToImagePipeline (DDIM ending at alpha_bar[t_0]) against our
    sampler with final_alpha t0, from the same per-sample seeds."""
    diffusers = pytest.importorskip("diffusers")
    from ldm.diffusion.config import SamplerSettings
    from ldm.latent_diffusion.generate import conditions, generate_latents

    _, models, folder, _ = exported(case)
    model = read_model_dir(models, None)
    pipe = diffusers.DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    decoded = []  # the latents the pipeline decodes: images alone would hide the last step in VQ's rounding
    decode = pipe.vqvae.decode
    pipe.vqvae.decode = lambda z, *a, **kw: decoded.append(z) or decode(z, *a, **kw)
    seeds, guidance = [3, 4], 2.0 if case == "text" else 1.0
    settings = SamplerSettings(steps=10, final_alpha="t0", guidance_scale=guidance)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    prompts = ["a red house", "a boat"]
    if case == "text":
        theirs = pipe(prompts, num_inference_steps=10, guidance_scale=guidance, generator=generators, output_type="np")
        cond, null = conditions(model.ldm.model, prompts=prompts, tokenizer=model.ldm.tokenizer)
    else:
        theirs = pipe(batch_size=2, num_inference_steps=10, generator=generators, output_type="np")
        cond, null = None, None
    with torch.no_grad():
        z = generate_latents(model.ldm.model, cond, null, seeds, settings)
        ours = (model.autoencoder.decode(z / model.ldm.scale_factor).clamp(-1, 1) + 1) / 2
    _close(z / model.ldm.scale_factor, decoded[0], f"{type(pipe).__name__} latents")
    _close(ours, torch.from_numpy(theirs.images).permute(0, 3, 1, 2), f"{type(pipe).__name__} images")


def test_self_attention_in_the_references_legacy_qkv_order_computes_ours():
    """The reference's AttentionBlock holds q|k|v as a 1x1 Conv1d grouped by head (QKVAttentionLegacy); the mapped
    weights, used that way, give our output."""
    from einops import rearrange

    from ldm.interchange import reference_keys as R
    from ldm.interchange.mapping import Block, export_state, plan
    from ldm.latent_diffusion.attention import AttentionBlock

    torch.manual_seed(0)
    heads, c = 4, 32
    ours = AttentionBlock(c, heads, norm_groups=8)
    for p in ours.parameters():
        torch.nn.init.normal_(p, std=0.2)
    theirs = export_state(ours.state_dict(), plan([Block("self_attn", "", "attn", heads=heads)],
                                                  dataclasses.replace(R.UNET_LAYOUT, places={"attn": "a"}),
                                                  ours.state_dict()))
    x = torch.randn(2, c, 4, 4)
    flat = rearrange(x, "b c h w -> b c (h w)")
    h = torch.nn.functional.group_norm(flat, 8, theirs["a.norm.weight"], theirs["a.norm.bias"])
    qkv = torch.nn.functional.conv1d(h, theirs["a.qkv.weight"], theirs["a.qkv.bias"])  # (b, 3c, L), rows (head, 3, ch)
    q, k, v = rearrange(qkv, "b (h s ch) l -> s (b h) ch l", h=heads, s=3)
    weight = torch.softmax(torch.einsum("nct,ncs->nts", q, k) / (c // heads) ** 0.5, dim=-1)
    a = rearrange(torch.einsum("nts,ncs->nct", weight, v), "(b h) ch l -> b (h ch) l", h=heads)
    reference = flat + torch.nn.functional.conv1d(a, theirs["a.proj_out.weight"], theirs["a.proj_out.bias"])
    with torch.no_grad():
        _close(ours(x), rearrange(reference, "b c (h w) -> b c h w", h=4), "legacy QKV attention")


def _ckpt(path: Path, state: dict) -> Path:
    torch.save({"state_dict": state, "global_step": 1}, path)
    return path


def test_unknown_and_missing_keys_are_named(tmp_path, exported):
    target, _, folder, ckpt = exported("uncond")
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    stray = _ckpt(tmp_path / "stray.ckpt", {**state, "model.diffusion_model.extra.weight": torch.zeros(1)})
    with pytest.raises(InvalidInput, match=r"unknown key 'model\.diffusion_model\.extra\.weight'"):
        import_reference(stray, target, tmp_path / "out")
    lacking = _ckpt(tmp_path / "lacking.ckpt", {k: v for k, v in state.items() if k != "first_stage_model.quant_conv.bias"})
    with pytest.raises(InvalidInput, match=r"missing key 'first_stage_model\.quant_conv\.bias'"):
        import_reference(lacking, target, tmp_path / "out")
    with pytest.raises(InvalidInput, match="is an LDM checkpoint .* pass an LDM preset"):
        import_reference(ckpt, Target(VQ, "vq-f4"), tmp_path / "out")
    wrong = Target(target.autoencoder, "vq-f4", dataclasses.replace(
        target.ldm, unet=dataclasses.replace(target.ldm.unet, channel_mult=(1, 2, 3, 3))), "wrong")
    with pytest.raises(InvalidInput, match=r"block_out_channels is \[32, 64, 96, 128\], the preset needs \[32, 64, 96, 96\]"):
        import_diffusers(folder, wrong, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_ema_weights_are_taken_and_the_schedule_checked(tmp_path, exported):
    from ldm.interchange.reference_keys import ema_name

    target, models, _, ckpt = exported("uncond")
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    ema = {ema_name(k): v + 1 for k, v in state.items() if k.startswith("model.diffusion_model.")}
    report = import_reference(_ckpt(tmp_path / "ema.ckpt", {**state, **ema, "model_ema.num_updates": torch.tensor(5)}),
                              target, tmp_path / "out")
    loaded = read_model_dir(tmp_path / "out", None).ldm
    assert report.weights == "ema" and loaded.card.weights == "ema"
    ours = read_model_dir(models, None).ldm.model.state_dict()
    assert torch.equal(loaded.model.state_dict()["unet.out.2.bias"], ours["unet.out.2.bias"] + 1)
    bent = {**state, "betas": state["betas"] * torch.linspace(1, 1.1, 1000)}
    with pytest.raises(InvalidInput, match="betas do not follow a linear schedule"):
        import_reference(_ckpt(tmp_path / "bent.ckpt", bent), target, tmp_path / "bent")
    config = {"linear_start": 0.0015, "linear_end": 0.0195, "scale_factor": 0.25}  # model.params of a config.yaml
    plain = {k: v for k, v in state.items() if k not in ("betas", "scale_factor")}
    report = import_reference(_ckpt(tmp_path / "plain.ckpt", plain), target, tmp_path / "plain", config=config)
    assert (report.scale_factor, report.scale_factor_from, report.schedule_from) == (0.25, "--config", "--config")


def test_a_crafted_pickle_runs_nothing_and_writes_nothing(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {"encoder.conv_in.weight": torch.zeros(1)}, "hook": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(InvalidInput, match="system"):
        import_reference(tmp_path / "evil.ckpt", Target(VQ, "vq-f4"), tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("preset", ldm_preset_names())
def test_every_shipped_preset_maps_key_for_key(preset):
    """The reference's table covers every preset; diffusers' every one its classes can express (named otherwise)."""
    from ldm.interchange import diffusers_keys as D, reference_keys as R
    from ldm.interchange.bundle import autoencoder_keys, ldm_keys, resolve_preset
    from ldm.interchange.diffusers_configs import unet_config
    from ldm.interchange.layout import autoencoder_blocks, conditioner_blocks, unet_blocks
    from ldm.interchange.mapping import plan

    target = resolve_preset(preset)
    ae, cfg = target.autoencoder, target.ldm
    for fmt in (R.AUTOENCODER, D.VAE):
        plan(autoencoder_blocks(ae), fmt, autoencoder_keys(ae))
    plan(unet_blocks(cfg.unet), R.UNET_LAYOUT, ldm_keys(cfg, "unet."))
    plan(conditioner_blocks(cfg.conditioning), R.CONDITIONER, ldm_keys(cfg, "cond_model."))
    # 8 heads at every width: diffusers' UNet2DModel has one head size
    if preset in ("lsun-churches-ldm8", "inpaint-ldm4-big"):
        with pytest.raises(InvalidInput, match="one channels-per-head for every level"):
            unet_config(cfg.unet, cfg.latent_size)
        return
    if preset == "layout-coco-ldm8":  # its 345M has no middle-block transformer (presets.py), diffusers' always has one
        with pytest.raises(InvalidInput, match="always attends in the middle block"):
            unet_config(cfg.unet, cfg.latent_size)
        return
    unet_config(cfg.unet, cfg.latent_size)
    plan(unet_blocks(cfg.unet), D.UNET, ldm_keys(cfg, "unet."))
    if cfg.conditioning.kind == "text":
        plan(conditioner_blocks(cfg.conditioning), D.LDMBERT, ldm_keys(cfg, "cond_model."))


def test_exported_names_are_the_references(exported):
    """Key names and shapes as in the reference's released checkpoints."""
    shapes = {}
    for case in ("text", "class", "uncond"):  # last: the unconditional UNet's self-attention
        _, _, _, ckpt = exported(case)
        shapes.update({k: tuple(v.shape) for k, v in torch.load(ckpt, weights_only=True)["state_dict"].items()})
    assert shapes["model.diffusion_model.middle_block.1.qkv.weight"] == (384, 128, 1)  # Conv1d 1x1, 8 heads of 16
    assert shapes["model.diffusion_model.middle_block.1.proj_out.weight"] == (128, 128, 1)
    assert shapes["first_stage_model.encoder.mid.attn_1.q.weight"] == (128, 128, 1, 1)
    for key in ("model.diffusion_model.time_embed.0.weight", "model.diffusion_model.input_blocks.0.0.weight",
                "model.diffusion_model.input_blocks.1.0.in_layers.0.weight",
                "model.diffusion_model.input_blocks.3.0.op.weight", "model.diffusion_model.out.2.bias",
                "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.ff.net.0.proj.weight",
                "first_stage_model.encoder.down.0.block.0.norm1.weight", "first_stage_model.decoder.up.1.upsample.conv.weight",
                "first_stage_model.quantize.embedding.weight", "first_stage_model.decoder.up.3.attn.2.proj_out.weight",
                "cond_stage_model.embedding.weight", "cond_stage_model.transformer.pos_emb.emb.weight",
                "cond_stage_model.transformer.attn_layers.layers.1.1.net.0.0.weight",
                "cond_stage_model.transformer.attn_layers.layers.2.1.to_q.weight", "betas", "scale_factor"):
        assert key in shapes, key


def test_init_autoencoder_takes_the_weights_of_a_model_dir_of_the_same_architecture(tmp_path):
    from ldm.autoencoder.checkpoint import init_autoencoder

    models = _model_dir(tmp_path, Target(KL, "kl-f8"))
    model, digest = init_autoencoder(models, KL, "train_autoencoder.init_from")
    _same({f"ae.{k}": v for k, v in model.state_dict().items()}, _tensors(models))
    assert model.training and len(digest) == 64
    with pytest.raises(InvalidInput, match=r"train_autoencoder.init_from .* differs from autoencoder.preset in ch \(32\)"):
        init_autoencoder(models, ae_preset("kl-f8"), "train_autoencoder.init_from")


def test_an_ldm_on_another_first_stage_than_its_presets_names_the_one_that_fits(tmp_path):
    """As `train_ldm.first_stage` pairs a preset with another autoencoder, `--first-stage` imports it."""
    from ldm.interchange.bundle import resolve_preset

    target = resolve_preset("tiny-cond", "vq-f4-tiny")
    assert target.ldm.first_stage == "vq-f4-tiny" and target.ldm.latent_size == (16, 16)
    models = _model_dir(tmp_path, target)
    ckpt = export_reference(models, tmp_path / "reference", yaml.safe_dump)
    with pytest.raises(InvalidInput, match="is not kl-f4-tiny, the first stage of --preset tiny-cond, but fits vq-f4-tiny;"
                                           " pass --first-stage vq-f4-tiny"):
        import_reference(ckpt, resolve_preset("tiny-cond"), tmp_path / "wrong")
    import_reference(ckpt, target, tmp_path / "back")
    _same(_tensors(models), _tensors(tmp_path / "back"))
