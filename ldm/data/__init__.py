"""Datasets as webdataset shards: decoding, cropping, the embedded photos, downloads."""
