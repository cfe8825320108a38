"""Models in and out: the reference's checkpoints and diffusers' folders, tensor for tensor."""
