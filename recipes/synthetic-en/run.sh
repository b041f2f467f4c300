#!/usr/bin/env bash
# The synthetic-en recipe on CPU: corpus -> pretrain -> fine-tune on a 1-hour subset (and the no-pretraining
# baseline) -> WER on held-out sentences (dev) and held-out speakers (test).
#
# Usage: recipes/synthetic-en/run.sh [WORK_DIR]     (knobs: CONFIG, HOURS, PRETRAIN_UPDATES, FINETUNE_UPDATES)
# Needs espeak-ng, flite and sox for the corpus. On a GPU raise the updates and --max-tokens.
set -euo pipefail
W2V2=${W2V2:-w2v2}
WORK=${1:-work/synthetic-en}
CONFIG=${CONFIG:-tiny}
HOURS=${HOURS:-2}
PRETRAIN_UPDATES=${PRETRAIN_UPDATES:-1500}
FINETUNE_UPDATES=${FINETUNE_UPDATES:-2000}
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python}

[ -f "$WORK/corpus/train.jsonl" ] || "$PYTHON" "$HERE/make_corpus.py" "$WORK/corpus" --hours "$HOURS"
C="$WORK/corpus"

# Self-supervised pretraining on all training audio (transcripts unused).
"$W2V2" pretrain --train "$C/train.jsonl" --valid "$C/dev.jsonl" --output "$WORK/pretrain" --config "$CONFIG" \
  --max-updates "$PRETRAIN_UPDATES" --max-tokens 400000 --max-sample-size 160000 --min-sample-size 16000 \
  --lr 2e-3 --log-every 100 --save-every 500 --valid-every 500

# CTC fine-tuning on a seeded 1-hour subset, from the pretrained model and from scratch.
FT=(--train "$C/train.jsonl" --valid "$C/dev.jsonl" --valid "$C/test.jsonl" --hours 1 --max-updates "$FINETUNE_UPDATES"
    --max-tokens 800000 --update-freq 1 --lr 1e-3 --log-every 100 --valid-every 500 --save-every 500)
"$W2V2" finetune --init "$WORK/pretrain/model.safetensors" --output "$WORK/finetune" --freeze-updates 200 "${FT[@]}"
"$W2V2" finetune --init scratch --config "$CONFIG" --output "$WORK/scratch" --freeze-updates 0 "${FT[@]}"

for run in finetune scratch; do
  "$W2V2" evaluate -m "$WORK/$run/model.safetensors" --data "$C/dev.jsonl" --data "$C/test.jsonl" --json \
    > "$WORK/$run/wer.json"
  "$W2V2" evaluate -m "$WORK/$run/model.safetensors" --data "$C/dev.jsonl" --data "$C/test.jsonl" --errors 3
done
