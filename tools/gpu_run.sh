#!/usr/bin/env bash
# The one command a session with a GPU runs to measure every GPU figure (bench/gpu_acceptance.py), within
# 8 minutes on one H100 or H200. Two steps, documented in docs/performance.md:
#
#   1. here, once per checkout:  bash tools/gpu_run.sh prepare
#      copies nanochat's source (MIT; ../shared/peers/src/nanochat or $NANOCHAT_SRC) into .peers/nanochat,
#      which .gitignore keeps out of git and the device call carries;
#   2. through the device tool:  run(command="bash tools/gpu_run.sh", carry=[".peers"], timeout_s=560)
#      on the GPU machine: its own python3 (PyTorch preinstalled), nothing downloaded, gptlab from this tree;
#      writes $OUT/gpu_acceptance.json (the table and every row's details), $OUT/gpu_acceptance.log and
#      $OUT/gpu.txt (card, driver, torch), and prints the table.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = prepare ]; then
  for src in "${NANOCHAT_SRC:-}" ../shared/peers/src/nanochat /work/shared/peers/src/nanochat; do
    if [ -n "$src" ] && [ -f "$src/nanochat/gpt.py" ]; then
      rm -rf .peers/nanochat && mkdir -p .peers/nanochat
      cp -r "$src/nanochat" .peers/nanochat/ && cp "$src/LICENSE" .peers/nanochat/ 2>/dev/null
      rm -rf .peers/nanochat/nanochat/__pycache__
      echo "nanochat source copied from $src to .peers/nanochat ($(du -sh .peers | cut -f1)); carry .peers"
      exit 0
    fi
  done
  echo "gpu_run.sh: error: nanochat's source not found (set NANOCHAT_SRC to the folder holding nanochat/)" >&2
  exit 2
fi

out=${OUT:-/tmp/gpu_acceptance}
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
} > "$out/gpu.txt"
cat "$out/gpu.txt"
# the script keeps to its own 460 s budget (a row past its share is cut and reported); timeout is a backstop
PYTHONUNBUFFERED=1 timeout 500 python3 bench/gpu_acceptance.py --out "$out/gpu_acceptance.json" \
  --nanochat-src .peers/nanochat 2>&1 | tee "$out/gpu_acceptance.log"
