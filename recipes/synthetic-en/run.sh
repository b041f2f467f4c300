#!/usr/bin/env bash
# The synthetic-en recipe: corpus -> pretrain -> fine-tune on a 1-hour subset (and the no-pretraining baseline)
# -> WER on held-out sentences (dev: training voices; test: held-out voices) -> the embedded model.
#
# Usage: recipes/synthetic-en/run.sh [WORK_DIR]
#   knobs (environment): CONFIG (small-preln), HOURS (12), PRETRAIN_UPDATES (3000), FINETUNE_UPDATES (1600),
#   SCRATCH_CONFIG (small-preln), SHIP_CONFIG (small-preln), SHIP_ROUNDS ("7000:3e-3:clean 3000:1e-3:clean":
#   UPDATES:LR, or UPDATES:LR:clean for a round on the audio before augmentation, per round), SHIP_PRECISION
#   (bf16 autocast on a CPU with AVX512-BF16 or AMX, else fp32), THREADS (2), SHIP_THREADS (1: the rounds),
#   LM_ORDER (3), LM_MIN_COUNT (2), LM_ALPHA (0.5), LM_BETA (1.0),
#   STAGES (default "corpus pretrain finetune ship lm evaluate": the stages to run, e.g. STAGES="ship evaluate"),
#   PACKAGED (the embedded model that evaluate compares the last round with; default the package's own)
# Needs espeak-ng, flite and sox for the corpus. Every stage is cached: rerunning skips finished stages and
# resumes an interrupted one from its last checkpoint. The sizes below are the CPU version (2 cores); on a GPU
# raise the updates and --max-tokens.
set -euo pipefail
W2V2=${W2V2:-w2v2}
PYTHON=${PYTHON:-python}
WORK=${1:-work/synthetic-en}
CONFIG=${CONFIG:-small-preln}
HOURS=${HOURS:-12}
PRETRAIN_UPDATES=${PRETRAIN_UPDATES:-3000}
FINETUNE_UPDATES=${FINETUNE_UPDATES:-1600}
SCRATCH_CONFIG=${SCRATCH_CONFIG:-small-preln}
THREADS=${THREADS:-2}
LM_ORDER=${LM_ORDER:-3}
LM_MIN_COUNT=${LM_MIN_COUNT:-2}
LM_ALPHA=${LM_ALPHA:-0.5}
LM_BETA=${LM_BETA:-1.0}
STAGES=${STAGES:-corpus pretrain finetune ship lm evaluate}
for stage in $STAGES; do
  case $stage in corpus|pretrain|finetune|ship|lm|evaluate) ;;
    *) echo "run.sh: STAGES: unknown stage '$stage' (corpus pretrain finetune ship lm evaluate)" >&2; exit 2 ;; esac
done
want() { [[ " $STAGES " == *" $1 "* ]]; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
C="$WORK/corpus"
stamp() { echo "[$(date '+%F %T')] $*" >&2; }

# The embedded model's rounds (the ship stage, below), read and checked before any stage runs.
# SHIP_ROUNDS: one UPDATES:LR[:clean] entry per round. The first round trains from scratch in ship/; each later
# round k starts again from round k-1's model with a fresh schedule (warm-up to its LR, then decay) in ship-k/, its
# conv feature encoder frozen (finetune's default with --init). A round trains on the augmented audio
# (train.jsonl), or with `:clean` on the same utterances before augmentation (train_clean.jsonl). The shipped
# model is two rounds on clean audio (126 minutes on one core): level on every held-out set with the previous
# recipe's three rounds, two of them on augmented audio (6000:2e-3 10000:2e-3 2000:5e-4:clean, 223 minutes).
# The last round's model is the embedded one.
SHIP_ROUNDS=${SHIP_ROUNDS:-7000:3e-3:clean 3000:1e-3:clean}
ship_runs=(); round_updates=(); round_lr=(); round_train=(); k=0
for round in $SHIP_ROUNDS; do
  k=$((k + 1)); IFS=: read -r updates lr data extra <<< "$round"
  [[ "$updates" =~ ^[1-9][0-9]*$ && "$lr" =~ ^[0-9.]+(e-?[0-9]+)?$ && ( -z "$data" || "$data" = clean ) && -z "$extra"
     && "$round" != *: ]] || {
    echo "run.sh: SHIP_ROUNDS: '$round' is not UPDATES:LR or UPDATES:LR:clean (e.g. 6000:2e-3)" >&2; exit 2; }
  ship_runs+=("$([ $k = 1 ] && echo ship || echo "ship-$k")")
  round_updates+=("$updates"); round_lr+=("$lr"); round_train+=("$C/train${data:+_$data}.jsonl")
done
[ $k -gt 0 ] || { echo "run.sh: SHIP_ROUNDS is empty (e.g. SHIP_ROUNDS=6000:2e-3)" >&2; exit 2; }
SHIP=${ship_runs[-1]}

# 1-3. Text, speech, augmentation (make_corpus.py caches every file; its manifests are written last).
# A corpus from before test's halves or train_clean.jsonl were written gets them from a rerun (15-30 s: every
# file is cached).
want corpus && { [ -f "$C/test.jsonl" ] && [ -f "$C/test_espeak.jsonl" ] && [ -f "$C/train_clean.jsonl" ] || {
  stamp corpus; "$PYTHON" "$HERE/make_corpus.py" "$C" --hours "$HOURS"; }; }
[ -f "$C/test.jsonl" ] || { echo "run.sh: no corpus in $C (run the corpus stage)" >&2; exit 2; }

# 4. Self-supervised pretraining on all training audio (transcripts unused). Two changes from the paper's settings
#    take a small model off the contrastive chance plateau on this corpus (RESULTS.md, "2026-12-02: off the
#    plateau"): the conv stack starts as a rough spectrogram (--conv-init envelope), and the masks are short
#    (2-frame spans, about 26% of frames) so that most targets have an unmasked neighbour 20-40 ms away. The
#    pre-LN config (LR 1e-3) hands fine-tuning a model that leaves CTC's blank-only start as soon as scratch does.
want pretrain && { [ -f "$WORK/pretrain/model.safetensors" ] && [ -f "$WORK/pretrain/.done" ] || {
  stamp pretrain
  "$W2V2" pretrain --train "$C/train.jsonl" --valid "$C/dev.jsonl" --output "$WORK/pretrain" --config "$CONFIG" \
    --conv-init envelope --mask-length 2 --mask-prob 0.3 --max-updates "$PRETRAIN_UPDATES" --max-tokens 240000 \
    --max-sample-size 48000 --min-sample-size 16000 --lr 1e-3 --warmup 0.1 --log-every 25 --save-every 100 \
    --valid-every 1000 --threads "$THREADS"
  touch "$WORK/pretrain/.done"
}; }

# 5. CTC fine-tuning on a seeded 1-hour subset, from the pretrained model (its conv stack trained too: frozen, it
#    fell behind; the head alone for the first 100 updates) and from scratch (SCRATCH_CONFIG: the embedded
#    model's config and settings, which leave CTC's blank-only start soonest). 20 s batches, no masking: 2-frame masks cost
#    scratch 2.1 points and gained the pretrained model about 1 (RESULTS.md, 2026-12-03: fine-tuning from the end of a four-pass pretraining).
FT=(--train "$C/train.jsonl" --valid "$C/dev.jsonl" --valid "$C/test.jsonl" --hours 1 --max-updates "$FINETUNE_UPDATES"
    --max-tokens 320000 --update-freq 1 --log-every 25 --valid-every 400 --save-every 100 --threads "$THREADS"
    --mask-prob 0 --mask-channel-prob 0 --layerdrop 0)
want finetune && {
  [ -f "$WORK/finetune-1h/.done" ] || { stamp finetune-1h
    "$W2V2" finetune --init "$WORK/pretrain/model.safetensors" --output "$WORK/finetune-1h" --lr 1e-3 \
      --freeze-updates 100 --train-feature-encoder "${FT[@]}"
    touch "$WORK/finetune-1h/.done"; }
  [ -f "$WORK/scratch-1h/.done" ] || { stamp scratch-1h
    "$W2V2" finetune --init scratch --config "$SCRATCH_CONFIG" --output "$WORK/scratch-1h" --lr 2e-3 \
      --freeze-updates 0 "${FT[@]}"
    touch "$WORK/scratch-1h/.done"; }
}

# The embedded model: CTC from scratch on every training transcript (the 1-hour runs above are the paper's
# comparison), SHIP_CONFIG (`small` with a pre-LN Transformer, which leaves CTC's blank-only start sooner; post-LN
# catches up by about update 1,000). Small batches (20 s: on this CPU a step costs less per audio-second than an
# 80 s one, and more updates is what an underfitting model needs), no masking or layerdrop (the model underfits
# 12 h of synthetic speech: held-out voices score like training ones), bf16 autocast (SHIP_PRECISION), 1.4x the
# fp32 speed on a CPU with AVX512-BF16. On a GPU, raise the rounds' updates and --max-tokens. A work folder from
# the older five-run recipe has its last run in ship/: it is moved to ship-old once.
SHIP_CONFIG=${SHIP_CONFIG:-small-preln}
# bf16 only where the CPU computes it (AVX512-BF16 or AMX): emulated bf16 trained about 7x slower than fp32.
SHIP_PRECISION=${SHIP_PRECISION:-$(grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null && echo bf16 || echo fp32)}
# One thread (SHIP_THREADS): the shipped model was trained on one, and the thread count changes how sums are split
# and rounded, so on the CPU it was trained on (2-core AMD EPYC, Zen 4, AVX512-BF16) with torch 2.11 the default
# retraces the shipped model to the bit (the seed fixes the initial weights and the batch order); another CPU or
# torch version may round differently. More threads train faster on an idle machine: another sample of the same
# training.
SHIP_THREADS=${SHIP_THREADS:-1}
want ship && {
  for train in "${round_train[@]}"; do
    [ -f "$train" ] || { echo "run.sh: no $train (rerun the corpus stage: it writes it in seconds)" >&2; exit 2; }
  done
  if [ -d "$WORK/ship" ] && [ ! -f "$WORK/ship/.one-run" ]; then
    [ -e "$WORK/ship-old" ] && { echo "run.sh: $WORK/ship is from an older recipe and $WORK/ship-old exists:" \
      "move one of them away" >&2; exit 2; }
    stamp "ship: moving the older recipe's last run to ship-old"; mv "$WORK/ship" "$WORK/ship-old"
  fi
  mkdir -p "$WORK/ship"; touch "$WORK/ship/.one-run"
  k=0; init=(--init scratch --config "$SHIP_CONFIG")
  for round in $SHIP_ROUNDS; do
    run=${ship_runs[$k]}; updates=${round_updates[$k]}; lr=${round_lr[$k]}; train=${round_train[$k]}; k=$((k + 1))
    if [ $k -gt 1 ] && [ -f "$WORK/$run/.done" ] && [ "$WORK/$previous/model.safetensors" -nt "$WORK/$run/.done" ]; then
      echo "run.sh: $WORK/$run was trained from an older $previous: move it away to train round $k again" >&2; exit 2
    fi
    if [ ! -f "$WORK/$run/.done" ]; then
      stamp "ship round $k ($run, $(basename "$train"))"
      "$W2V2" finetune "${init[@]}" --train "$train" --valid "$C/dev.jsonl" \
        --output "$WORK/$run" --lr "$lr" --max-updates "$updates" --max-tokens 320000 --update-freq 1 \
        --freeze-updates 0 --mask-prob 0 --mask-channel-prob 0 --layerdrop 0 --valid-every 1000 --save-every 100 \
        --log-every 25 --threads "$SHIP_THREADS" --precision "$SHIP_PRECISION"
      touch "$WORK/$run/.done"
    fi
    previous=$run; init=(--init "$WORK/$run/model.safetensors")
  done
}

# A word n-gram model for beam search (`--beam --lm`): the transcripts of the corpus' whole training split (text
# only: 82,629 sentences, most of them never rendered), never a dev or test sentence. LM_ALPHA and LM_BETA were
# picked on 150 dev utterances with the embedded model (RESULTS.md, "2026-12-02: beam search with a word language model").
want lm && { [ -f "$WORK/lm.arpa" ] || { stamp lm
  "$PYTHON" -c 'import json, sys
for line in open(sys.argv[1]):
    s = json.loads(line)
    if s["split"] == "train":
        print(s["transcript"])' "$C/text/sentences.jsonl" > "$WORK/lm_train.txt.tmp"
  mv "$WORK/lm_train.txt.tmp" "$WORK/lm_train.txt"
  "$W2V2" lm "$WORK/lm_train.txt" --output "$WORK/lm.arpa" --order "$LM_ORDER" --min-count "$LM_MIN_COUNT"
}; }

# 6. WER/CER on held-out sentences with training voices (dev) and with held-out voices (test, and its halves:
#    the held-out espeak-ng voices, the target's set, and flite's slt).
#    The packaged embedded model (PACKAGED) is scored on the same sets as `packaged`, so that report.py can
#    compare the last round with it utterance by utterance: the check that the recipe reproduces it.
PACKAGED=${PACKAGED:-$ROOT/w2v2cli/models/default.safetensors}
want evaluate || exit 0
for run in finetune-1h scratch-1h "${ship_runs[@]}" packaged; do
  model="$WORK/$run/model.safetensors"
  if [ "$run" = packaged ]; then
    [ -f "$PACKAGED" ] || { stamp "evaluate packaged: no $PACKAGED, skipped"; continue; }
    model=$PACKAGED; mkdir -p "$WORK/packaged"
  fi
  [ -f "$model" ] || { stamp "evaluate $run: no model yet, skipped"; continue; }
  # A score is kept while what it was computed from is unchanged (the model, the sets, and for the LM score the
  # LM and its weights): its key, file names with their sizes and times, is written beside it.
  key="$(stat -L -c '%n %s %Y' "$model" "$C"/{dev,test,test_espeak,test_slt}.jsonl "$ROOT"/sample_audio/* 2>&1 || :)"
  if [ -f "$WORK/$run/wer.json" ] && [ "$(cat "$WORK/$run/wer.key" 2>/dev/null)" = "$key" ]; then
    stamp "evaluate $run: scored already"
  else
    stamp "evaluate $run"
    "$W2V2" evaluate -m "$model" --data "$C/dev.jsonl" --data "$C/test.jsonl" \
      --data "$C/test_espeak.jsonl" --data "$C/test_slt.jsonl" --data "$ROOT/sample_audio" --json \
      --threads "$THREADS" --utterances "$WORK/$run/utterances.jsonl" > "$WORK/$run/wer.json.tmp"
    mv "$WORK/$run/wer.json.tmp" "$WORK/$run/wer.json"
    echo "$key" > "$WORK/$run/wer.key"
  fi
  [ -f "$WORK/lm.arpa" ] || continue
  key="$key
$(stat -L -c '%n %s %Y' "$WORK/lm.arpa") alpha $LM_ALPHA beta $LM_BETA"
  if [ -f "$WORK/$run/wer-lm.json" ] && [ "$(cat "$WORK/$run/wer-lm.key" 2>/dev/null)" = "$key" ]; then
    stamp "evaluate $run with the word LM: scored already"; continue
  fi
  stamp "evaluate $run with beam search and the word LM"
  "$W2V2" evaluate -m "$model" --data "$C/dev.jsonl" --data "$C/test.jsonl" \
    --data "$C/test_espeak.jsonl" --data "$C/test_slt.jsonl" --data "$ROOT/sample_audio" --json \
    --threads "$THREADS" --beam --lm "$WORK/lm.arpa" --alpha "$LM_ALPHA" --beta "$LM_BETA" > "$WORK/$run/wer-lm.json.tmp"
  mv "$WORK/$run/wer-lm.json.tmp" "$WORK/$run/wer-lm.json"
  echo "$key" > "$WORK/$run/wer-lm.key"
done
"$PYTHON" "$HERE/report.py" "$WORK" finetune-1h scratch-1h "${ship_runs[@]}" packaged > "$WORK/results.md"
cat "$WORK/results.md"
stamp "done; package with: $PYTHON $HERE/package_model.py $WORK/$SHIP/model.safetensors $WORK/provenance.json"
[ -f "$WORK/lm.arpa" ] && stamp "and the word LM: gzip -9 -n -c $WORK/lm.arpa > $ROOT/w2v2cli/models/default-lm.arpa.gz"
exit 0
