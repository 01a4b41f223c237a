"""Reports over a dataset: validation, histograms, the dataset card."""
