"""Label maps and layouts beside the image shards (stage label_maps), for semantic synthesis and layout-to-image."""
