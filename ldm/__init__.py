"""The library of ldm-pipeline: models, diffusion, data formats, degradations, metrics and storage; no params, no paths."""
