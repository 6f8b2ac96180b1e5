"""Data: JSONL/Parquet readers with field mappings, tasks, packing."""
