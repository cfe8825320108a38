"""The ablated UNet of Dhariwal & Nichol with LDM's cross-attention (Sec. 3.3, D.2.1, Tab. 12-16)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ldm.latent_diffusion.attention import AttentionBlock, SpatialTransformer, zero_module
from ldm.latent_diffusion.blocks import Downsample, EmbedSequential, ResBlock, Upsample, timestep_embedding
from ldm.latent_diffusion.config import UNetConfig


class UNet(nn.Module):
    """eps_theta(z_t, t, tau(y)): the denoiser of Eq. 2/3, built from a UNetConfig."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        mc = config.model_channels
        emb_ch = 4 * mc  # time-embedding width, as ADM
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))

        def res(ch_in: int, ch_out: int, **kw: bool) -> ResBlock:
            return ResBlock(ch_in, emb_ch, ch_out, dropout=config.dropout,
                            use_scale_shift_norm=config.use_scale_shift_norm,
                            norm_groups=config.norm_groups, use_checkpoint=config.use_checkpoint, **kw)

        # Encoder: num_res_blocks res blocks per level, attention where the factor is listed.
        ch = mc
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(config.in_channels, mc, 3, padding=1))])
        skip_channels = [ch]
        factor = 1
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [res(ch, mult * mc)]
                ch = mult * mc
                if factor in config.attention_resolutions:
                    layers.append(self._attention(ch))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_channels.append(ch)
            if level != config.num_levels - 1:
                down = res(ch, ch, down=True) if config.resblock_updown else Downsample(ch, config.conv_resample)
                self.input_blocks.append(EmbedSequential(down))
                skip_channels.append(ch)
                factor *= 2

        middle: list[nn.Module] = [res(ch, ch)]
        if config.mid_attention:
            middle.append(self._attention(ch))
        middle.append(res(ch, ch))
        self.middle_block = EmbedSequential(*middle)

        # Decoder: one more res block per level, each fed a skip connection.
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), mult * mc)]
                ch = mult * mc
                if factor in config.attention_resolutions:
                    layers.append(self._attention(ch))
                if level and i == config.num_res_blocks:
                    layers.append(res(ch, ch, up=True) if config.resblock_updown
                                  else Upsample(ch, config.conv_resample))
                    factor //= 2
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(
            nn.GroupNorm(config.norm_groups, ch),
            nn.SiLU(),
            zero_module(nn.Conv2d(mc, config.out_channels, 3, padding=1)),
        )

    def _attention(self, channels: int) -> nn.Module:
        c = self.config
        heads, dim_head = c.heads_for(channels)
        if c.attention == "cross":
            return SpatialTransformer(channels, heads, dim_head, c.transformer_depth, c.context_dim,
                                      dropout=c.dropout, norm_groups=c.norm_groups,
                                      use_checkpoint=c.use_checkpoint)
        return AttentionBlock(channels, heads, norm_groups=c.norm_groups, use_checkpoint=c.use_checkpoint)

    def forward(self, x: Tensor, t: Tensor, context: Tensor | None = None) -> Tensor:
        """x [N x C_in x H x W], t [N] long, context [N x M x D_ctx] or None -> [N x C_out x H x W]."""
        c = self.config
        if x.shape[-2] % c.downsample_factor or x.shape[-1] % c.downsample_factor:
            raise ValueError(
                f"UNet: latent height and width must be multiples of {c.downsample_factor}"
                f" (2 ** (levels - 1)), got {tuple(x.shape[-2:])}"
            )
        if c.attention == "cross" and context is None:
            raise ValueError("UNet: this model cross-attends to a context [N x M x D]; got None")
        emb = self.time_embed(timestep_embedding(t, c.model_channels).to(x.dtype))  # (N, 4*mc)
        h = x
        skips = []
        for block in self.input_blocks:
            h = block(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)  # (N, C_max, H/f, W/f)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context)
        return self.out(h)  # (N, C_out, H, W)
