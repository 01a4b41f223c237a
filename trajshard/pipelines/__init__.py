"""The stages as plain functions (align, frames, stats, shards) and the Ray job (ingest) composing them."""
