#!/usr/bin/env bash
# The vLLM GPU check (bench/gpu_check.py): engine vs trainer log-probs, a weight update
# without restart, the time of a GRPO step. On a GPU: pip install -e ".[gpu]" first.
# Usage: bash bench/gpu_check.sh [--cpu] [--out FILE.json]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python bench/gpu_check.py "$@"
