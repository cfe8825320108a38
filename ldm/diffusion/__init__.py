"""Gaussian diffusion in latent space: schedules, forward process, posterior, objective, samplers (Appendix A, B)."""

from ldm.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "config": ("DiffusionConfig", "ImageGuideSettings", "LossType", "Parameterization", "SamplerName", "SamplerSettings",
               "ScheduleKind", "Spacing"),
    "denoisers": ("eps_denoiser", "image_guided_denoiser"),
    "losses": ("diffusion_loss", "min_snr_weight", "per_sample_loss", "training_target"),
    "noise": ("Generators", "randn", "seeded_generators"),
    "samplers": ("sample", "sample_ddim", "sample_ddpm", "sample_dpmpp_2m", "sample_plms", "sampling_timesteps"),
    "schedule": ("NoiseSchedule", "cosine_betas", "eps_from_v", "eps_from_x0", "gather", "linear_betas", "make_schedule",
                 "predict_eps", "predict_x0", "q_posterior", "q_sample", "sqrt_linear_betas", "v_from_x0_eps",
                 "x0_from_eps", "x0_from_v"),
})
