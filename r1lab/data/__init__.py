"""Data: JSONL/Parquet readers with field mappings, tasks, packing and the varlen attention
of packed rows."""
