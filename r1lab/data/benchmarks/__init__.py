"""Benchmark test sets shipped with r1lab, so that a fresh install evaluates them anywhere.

Each folder holds one set as its upstream published it, its ``SOURCE.md`` (repository, commit,
record format, checksums) and its ``LICENSE``: ``gsm8k/test.jsonl`` (MIT, OpenAI),
``math500/test.jsonl`` (MIT, OpenAI; problems from MATH, MIT), ``humaneval/HumanEval.jsonl``
(MIT, OpenAI) and ``mbpp/mbpp.jsonl`` (CC BY 4.0, Google). Tasks find them through
:func:`r1lab.data.tasks.data_dir` (package resources), and ``task.data_dir`` or
``$R1LAB_DATA_DIR`` replace them with a folder of the same layout.
"""
