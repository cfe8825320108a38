"""The reference's key layout (CompVis latent-diffusion / taming-transformers), as data.

A first stage's checkpoint holds `encoder.*`, `decoder.*`, `quant_conv.*`,
`post_quant_conv.*` and (VQ) `quantize.embedding.weight`, plus the training-only
`loss.*` (discriminator, LPIPS). An LDM's holds the UNet under
`model.diffusion_model.`, its EMA copy under `model_ema.` (dots removed from the
names), the first stage under `first_stage_model.`, tau_theta under
`cond_stage_model.` and the schedule's buffers at the top level. Our UNet keeps
the reference's block numbering, so only the insides of blocks are renamed; its
self-attention holds q|k|v as one Linear where the reference has a 1x1 Conv1d
grouped by head (legacy QKV order).
"""

from __future__ import annotations

from ldm.interchange.mapping import Format, Rule

UNET, FIRST_STAGE, COND_STAGE, EMA = "model.diffusion_model.", "first_stage_model.", "cond_stage_model.", "model_ema."
# Top-level keys of an LDM checkpoint that we do not load: the schedule is rebuilt from the config (and checked
# against `betas`), the EMA bookkeeping is not a weight, `logvar` is a training buffer.
LDM_UNUSED = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
              "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
              "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
              "lvlb_weights", "logvar", "scale_factor", "model_ema.decay", "model_ema.num_updates")
EMA_DECAY = 0.9999  # LitEma's default, written beside an exported EMA copy (it only matters to further training)
PARAM = (Rule("", ""),)

AUTOENCODER = Format(
    name="reference",
    places={
        "conv_in": "{coder}.conv_in", "norm_out": "{coder}.norm_out", "conv_out": "{coder}.conv_out",
        "enc.res": "encoder.down.{level}.block.{j}", "enc.attn": "encoder.down.{level}.attn.{j}",
        "enc.sample": "encoder.down.{level}.downsample.conv",
        "mid.res0": "{coder}.mid.block_1", "mid.attn": "{coder}.mid.attn_1", "mid.res1": "{coder}.mid.block_2",
        "dec.res": "decoder.up.{level}.block.{j}", "dec.attn": "decoder.up.{level}.attn.{j}",
        "dec.sample": "decoder.up.{level}.upsample.conv",
        "quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv", "codebook": "quantize.embedding",
    },
    rules={
        "param": PARAM,
        "ae_res": (Rule("norm1", "norm1"), Rule("conv1", "conv1"), Rule("norm2", "norm2"), Rule("conv2", "conv2"),
                   Rule("skip", "nin_shortcut")),
        "ae_attn": (Rule("norm", "norm"), Rule("q", "q"), Rule("k", "k"), Rule("v", "v"), Rule("proj_out", "proj_out")),
    },
    unused=("loss.",),  # the discriminator and LPIPS of training; not part of the model
)

# The SpatialTransformer (Tab. 16): the same names here, in the reference and in diffusers' Transformer2DModel,
# except our GEGLU feed-forward's two Linears
SPATIAL_TRANSFORMER = {
    "transformer": (Rule("norm", "norm"), Rule("proj_in", "proj_in"), Rule("proj_out", "proj_out")),
    "transformer_block": tuple(
        Rule(ours, f"transformer_blocks.{{d}}.{theirs}") for ours, theirs in (
            ("norm1", "norm1"), ("attn1.to_q", "attn1.to_q"), ("attn1.to_k", "attn1.to_k"),
            ("attn1.to_v", "attn1.to_v"), ("attn1.to_out.0", "attn1.to_out.0"), ("norm2", "norm2"),
            ("attn2.to_q", "attn2.to_q"), ("attn2.to_k", "attn2.to_k"), ("attn2.to_v", "attn2.to_v"),
            ("attn2.to_out.0", "attn2.to_out.0"), ("norm3", "norm3"),
            ("ff.proj_in", "ff.net.0.proj"), ("ff.proj_out", "ff.net.2"))),
}

UNET_LAYOUT = Format(
    name="reference",
    places={
        "time_1": "time_embed.0", "time_2": "time_embed.2", "conv_in": "input_blocks.0.0",
        "down.res": "input_blocks.{n}.0", "down.attn": "input_blocks.{n}.1",
        "down.sample": "input_blocks.{n}.0.op", "down.sample_res": "input_blocks.{n}.0",
        "mid.res0": "middle_block.0", "mid.attn": "middle_block.1", "mid.res1": "middle_block.{m}",
        "up.res": "output_blocks.{n}.0", "up.attn": "output_blocks.{n}.1",
        "up.sample": "output_blocks.{n}.{p}.conv", "up.sample_res": "output_blocks.{n}.{p}",
        "norm_out": "out.0", "conv_out": "out.2",
    },
    rules={
        "param": PARAM,
        "unet_res": (Rule("in_norm", "in_layers.0"), Rule("in_conv", "in_layers.2"), Rule("emb_proj", "emb_layers.1"),
                     Rule("out_norm", "out_layers.0"), Rule("out_conv", "out_layers.3"),
                     Rule("skip", "skip_connection")),
        "self_attn": (Rule("norm", "norm"), Rule("qkv", "qkv", "qkv_heads"), Rule("proj_out", "proj_out", "conv1d")),
        **SPATIAL_TRANSFORMER,
    },
)

CONDITIONER = Format(
    name="reference",
    places={
        "class.embedding": "embedding",  # ClassEmbedder
        "text.token_emb": "transformer.token_emb", "text.pos_emb": "transformer.pos_emb.emb",  # BERTEmbedder
        "text.block": "transformer.attn_layers.layers", "text.norm": "transformer.norm",
        "semantic.channel_mapper": "channel_mapper",  # SpatialRescaler of the semantic model
    },
    rules={
        "param": PARAM,
        # x-transformers' Encoder: layer 2i is (LayerNorm, Attention), layer 2i+1 (LayerNorm, FeedForward)
        "text_block": (Rule("norm1", "{a}.0"), Rule("to_qkv", ("{a}.1.to_q", "{a}.1.to_k", "{a}.1.to_v"), "split3"),
                       Rule("to_out", "{a}.1.to_out"), Rule("norm2", "{f}.0"), Rule("mlp.0", "{f}.1.net.0.0"),
                       Rule("mlp.2", "{f}.1.net.2")),
    },
    # TransformerWrapper's language-model head, built but never called by BERTEmbedder (see the txt2img preset)
    unused=("transformer.to_logits.",),
)


def ema_name(unet_key: str) -> str:
    """The reference's EMA copy of `model.diffusion_model.<name>`: LitEma drops the dots from buffer names."""
    return EMA + "diffusion_model" + unet_key[len(UNET):].replace(".", "")
