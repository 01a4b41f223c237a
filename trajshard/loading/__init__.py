"""Reading shards for training without torch: sample order, shard ranges, mixtures, index files.

``trajshard.loader`` wraps this in a torch ``IterableDataset``; everything here imports without torch.
"""
