#!/usr/bin/env bash
# One prepared GPU run for a lent device: agreement with the CPU and the original, inference (eager /
# fused / original, fp32 and bf16), the fused model as a CUDA graph, and the pose fine-tuning step
# against the original (fp32, bf16 autocast, + channels-last, + torch.compile). Writes gpu.json and
# finetune rows under $OUT (default benchmarks/out). About 6-10 minutes on an H200.
#
# The original code and the parity configs are not part of this repository; before the run, copy
# them into ignored folders of the working tree and carry those to the device, e.g.
#     mkdir -p .original && cp -r <HRFormer checkout>/cls .original/cls
#     mkdir -p .original/parity && cp ../shared/parity/official_cls_hrt_*.keys.json .original/parity/
# then run `bash benchmarks/gpu_session.sh` there with carry [".original"].
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/out}"
mkdir -p "$OUT"
export PYTHONPATH="src:.${PYTHONPATH:+:$PYTHONPATH}"
export HRFORMER_ORIGINAL="${HRFORMER_ORIGINAL:-.original/cls}"
export HRFORMER_PARITY="${HRFORMER_PARITY:-$([ -d ../shared/parity ] && echo ../shared/parity || echo .original/parity)}"
python -c "import safetensors, huggingface_hub" 2>/dev/null || pip install -q safetensors huggingface_hub
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python - <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())
EOF
reference=()
if [ -f "$HRFORMER_ORIGINAL/models/hrt.py" ]; then
  reference=(--reference benchmarks.original:build)
else
  echo "no original code at $HRFORMER_ORIGINAL: timing ours only" >&2
fi
python -m benchmarks.gpu "${reference[@]}" --models t s --batches 1 8 32 --dtypes fp32 bf16 \
  --sections agreement inference graphs finetune --out "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu.log"
