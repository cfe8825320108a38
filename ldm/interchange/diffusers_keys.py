"""diffusers' key layout (AutoencoderKL, VQModel, UNet2DModel, UNet2DConditionModel, LDMBertModel), as data.

diffusers numbers blocks per level (`down_blocks.{level}.resnets.{j}`), its decoders
in execution order (`up_blocks.0` is the lowest resolution), and holds attention
projections as Linear layers (`to_q`, `to_k`, `to_v`, `to_out.0`) where our first
stage has 1x1 convolutions and our UNet's self-attention one fused q|k|v Linear.
The SpatialTransformer's insides have the same names on both sides.
"""

from __future__ import annotations

from ldm.interchange.mapping import Format, Rule
from ldm.interchange.reference_keys import SPATIAL_TRANSFORMER

PARAM = (Rule("", ""),)

VAE = Format(
    name="diffusers",
    places={
        "conv_in": "{coder}.conv_in", "norm_out": "{coder}.conv_norm_out", "conv_out": "{coder}.conv_out",
        "enc.res": "encoder.down_blocks.{level}.resnets.{j}", "enc.attn": "encoder.down_blocks.{level}.attentions.{j}",
        "enc.sample": "encoder.down_blocks.{level}.downsamplers.0.conv",
        "mid.res0": "{coder}.mid_block.resnets.0", "mid.attn": "{coder}.mid_block.attentions.0",
        "mid.res1": "{coder}.mid_block.resnets.1",
        "dec.res": "decoder.up_blocks.{k}.resnets.{j}", "dec.attn": "decoder.up_blocks.{k}.attentions.{j}",
        "dec.sample": "decoder.up_blocks.{k}.upsamplers.0.conv",
        "quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv", "codebook": "quantize.embedding",
    },
    rules={
        "param": PARAM,
        "ae_res": (Rule("norm1", "norm1"), Rule("conv1", "conv1"), Rule("norm2", "norm2"), Rule("conv2", "conv2"),
                   Rule("skip", "conv_shortcut")),
        "ae_attn": (Rule("norm", "group_norm"), Rule("q", "to_q", "linear"), Rule("k", "to_k", "linear"),
                    Rule("v", "to_v", "linear"), Rule("proj_out", "to_out.0", "linear")),
    },
)

UNET = Format(
    name="diffusers",
    places={
        "time_1": "time_embedding.linear_1", "time_2": "time_embedding.linear_2", "conv_in": "conv_in",
        "down.res": "down_blocks.{level}.resnets.{j}", "down.attn": "down_blocks.{level}.attentions.{j}",
        "down.sample": "down_blocks.{level}.downsamplers.0.conv", "down.sample_res": "down_blocks.{level}.downsamplers.0",
        "mid.res0": "mid_block.resnets.0", "mid.attn": "mid_block.attentions.0", "mid.res1": "mid_block.resnets.1",
        "up.res": "up_blocks.{k}.resnets.{j}", "up.attn": "up_blocks.{k}.attentions.{j}",
        "up.sample": "up_blocks.{k}.upsamplers.0.conv", "up.sample_res": "up_blocks.{k}.upsamplers.0",
        "norm_out": "conv_norm_out", "conv_out": "conv_out",
    },
    rules={
        "param": PARAM,
        "unet_res": (Rule("in_norm", "norm1"), Rule("in_conv", "conv1"), Rule("emb_proj", "time_emb_proj"),
                     Rule("out_norm", "norm2"), Rule("out_conv", "conv2"), Rule("skip", "conv_shortcut")),
        "self_attn": (Rule("norm", "group_norm"), Rule("qkv", ("to_q", "to_k", "to_v"), "split3"),
                      Rule("proj_out", "to_out.0")),
        **SPATIAL_TRANSFORMER,  # Transformer2DModel keeps the reference's names
    },
)

LDMBERT = Format(
    name="diffusers",
    places={"text.token_emb": "model.embed_tokens", "text.pos_emb": "model.embed_positions",
            "text.block": "model.layers.{i}", "text.norm": "model.layer_norm"},
    rules={
        "param": PARAM,
        "text_block": (Rule("norm1", "self_attn_layer_norm"),
                       Rule("to_qkv", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), "split3"),
                       Rule("to_out", "self_attn.out_proj"), Rule("norm2", "final_layer_norm"),
                       Rule("mlp.0", "fc1"), Rule("mlp.2", "fc2")),
    },
    unused=("to_logits.",),  # LDMBertModel's language-model head, never called by the pipeline
)

# diffusers has no class-conditional LDM: the class tokens are exported as a component of their own
CLASS_EMBEDDER = Format(name="diffusers", places={"class.embedding": "embedding"}, rules={"param": PARAM})
