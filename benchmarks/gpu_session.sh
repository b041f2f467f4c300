#!/usr/bin/env bash
# Every GPU measurement docs/benchmarks.md still lacks, in one command for one device call (about 10 minutes on an H100):
# the CUDA tests, the alignment benchmark (64 utterances and a 1-hour file), batched transcription, and
# pretraining and fine-tuning throughput of the base config. Each step has its own time limit, so one slow step
# does not cost the others; each writes OUT/<step>.txt.
#
# Usage (on the GPU machine, from the repository root, with the wheels from ../shared/device/wheels.sh carried
# in .whl/):   OUT=/some/folder benchmarks/gpu_session.sh
set -uo pipefail
OUT=${OUT:?set OUT to a folder for the results}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo "== $name: $*" | tee "$OUT/$name.txt" >&2
  local start=$SECONDS
  timeout "$limit" "$@" >> "$OUT/$name.txt" 2>&1
  echo "== $name: exit $? after $((SECONDS - start)) s" | tee -a "$OUT/$name.txt" >&2
}
{ nvidia-smi -L; nproc; python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())'; } \
  > "$OUT/machine.txt" 2>&1
step gpu_tests 120 python3 -m pytest -q -m gpu -p no:cacheprovider tests
step align 120 python3 benchmarks/align.py --devices cuda --utterances 64 --hour-minutes 60 --long-minutes 0
step transcribe 90 python3 benchmarks/transcribe_gpu.py --hours 1
step pretrain 120 python3 benchmarks/pretrain_throughput.py --config base --updates 60 --num-workers 8
step finetune 90 python3 benchmarks/pretrain_throughput.py --objective finetune --config base --updates 60 \
  --num-workers 8
tail -n 3 "$OUT"/*.txt
