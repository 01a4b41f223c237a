"""trajshard: raw robot recordings to aligned, tokenized WebDataset shards for VLA training."""

__version__ = "0.1.0"
