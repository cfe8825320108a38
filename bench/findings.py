"""Why a goal is missed and what would close it, by row group, from the measured runs (BENCHMARKS.md prints the
finding of each missed row's group; the figures in it are the ranges seen over runs on 2 shared cores)."""

from __future__ import annotations

FINDINGS: dict[str, str] = {
    "UNet": (
        "Both sides run the same kernels on the same shapes: oneDNN convolutions, GroupNorm, and attention through"
        " torch's scaled_dot_product_attention (ours calls it directly, diffusers through AttnProcessor2_0), so the"
        " eager step is a tie within the noise of shared cores (0.89-1.18x over runs). Channels-last tensors measured"
        " -4% to +7% on these sizes, not worth their copies. torch.compile (`--compile`) lifts both sides alike:"
        " tiny-cond inference +14% on each, the training step unchanged, the ratio still 0.95-1.0x. What would"
        " close it: kernels neither side has (a fused GroupNorm-SiLU, a fused GEGLU), or a GPU, where bf16 and"
        " the fused attention weigh more (the `gpu` group)."),
    "Autoencoder": (
        "The same convolutions, GroupNorms and mid-block attention on both sides, so the ratio is a tie whose sign"
        " flips between runs (about 0.9-1.1x at these small batches). What would close it: the fusion the UNet"
        " needs (see UNet); the autoencoder runs once per image in this pipeline (the latent cache), so it is"
        " not on the training path."),
    "Sampling": (
        "The samplers drive the same UNet, which is nearly all of a step; a sampler's own arithmetic is a few"
        " tensor operations per step on both sides, so the ratio stays near parity (0.95-1.10x over runs). 1.1x end to end"
        " needs a faster UNet (see UNet), not a faster sampler."),
    "Data": (
        "The latent cache row sits at the goal's edge (1.47-1.54x over runs): its encoder, kl-f4 at a quarter"
        " width (3.5M parameters) on 64 px crops, costs about half of a tiny-cond training step, so skipping it"
        " cannot give much more than 2x. The gain grows with the encoder: the paper's first stages (55-84M"
        " parameters at 256 px) dominate the step they feed; a wider encoder row (kl-f4 at half width, 256 px)"
        " would show it, at minutes more of `make bench`."),
    "Machine": (
        "The training step's FLOP/s over torch.mm's peak measured 39-94% on 2 cores: the tiny UNets' convolutions run"
        " near the peak, the wider preset less (batch 4: smaller GEMMs, more time in GroupNorm and attention"
        " softmax, which count few FLOPs). A larger batch, or fused normalisation kernels, would raise it."),
    "Pipeline": (
        "A fresh `ldm run` imports Prefect and the flow and starts Prefect's temporary API server (about 3 s, then"
        " 5 s before it answers; starting it in a thread while the flow imports saved under 0.5 s, since the"
        " server's own imports come first) and stops it at exit (about 1.3 s); `dvc dag` and `dvc status` (side by"
        " side; no subflow when nothing is stale) add about 1.5 s. Against a running server (`prefect server start`"
        " and PREFECT_API_URL, as scheduled deployments run: the row below it) the overhead meets the goal."),
}
