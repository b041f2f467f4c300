#!/usr/bin/env bash
# Renders the sample audio from the sentences below with voices that no training data of the embedded model uses
# (espeak-ng's en-gb-x-rp accent and flite's slt), as 16 kHz mono 16-bit WAV with a .txt reference beside each.
# Needs espeak-ng, flite and sox (apt-get install espeak-ng flite sox). Usage: sample_audio/make.sh
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

render() {  # name engine voice speed text transcript
  local name=$1 engine=$2 voice=$3 speed=$4 text=$5 transcript=$6
  if [ "$engine" = espeak ]; then
    espeak-ng -v "$voice" -s "$speed" -w "$tmp/raw.wav" "$text"
  else
    flite -voice "$voice" -t "$text" -o "$tmp/raw.wav"
  fi
  sox "$tmp/raw.wav" -r 16000 -c 1 -b 16 "$tmp/$name.wav" gain -n -3
  mv "$tmp/$name.wav" "$name.wav"
  printf '%s\n' "$transcript" > "$name.txt"
}

render quick_brown_fox espeak en-gb-x-rp+m5 160 \
  "The quick brown fox jumps over the lazy dog." \
  "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG"
render speech_recognition flite slt 0 \
  "Speech recognition turns spoken words into written text." \
  "SPEECH RECOGNITION TURNS SPOKEN WORDS INTO WRITTEN TEXT"
render one_hour espeak en-gb-x-rp+f3 150 \
  "Self supervised learning needs only one hour of labels." \
  "SELF SUPERVISED LEARNING NEEDS ONLY ONE HOUR OF LABELS"
render station espeak en-gb-x-rp+david 175 \
  "Please call me when you arrive at the station tomorrow morning." \
  "PLEASE CALL ME WHEN YOU ARRIVE AT THE STATION TOMORROW MORNING"
render river flite slt 0 \
  "She opened the window and looked at the river far below." \
  "SHE OPENED THE WINDOW AND LOOKED AT THE RIVER FAR BELOW"

# About a minute and a half of read text, for the long-audio and alignment demos.
long_text="The old lighthouse stood at the end of a narrow road above the sea. Every evening the keeper climbed the \
stairs, cleaned the glass and lit the great lamp. Ships passing in the night could see the light from many miles \
away, and the sailors knew that the rocks were near. One winter a storm came from the north. The wind was so strong \
that the keeper could not open the door, and the waves broke over the wall of the garden. For three days he stayed \
inside and kept the lamp burning. On the fourth morning the sky was clear and quiet. A small boat came into the \
harbor with a young captain and his crew. They had lost their way in the dark, but they had seen the light on the \
hill and turned away from the rocks just in time. The captain walked up the road to thank the keeper. He brought \
bread, coffee and a letter from the people of the village. The keeper read the letter twice and put it on the table \
beside the lamp. Many years later the lighthouse was closed and a machine took the place of the keeper. The letter \
is still there, on the same table, and visitors who climb the stairs can read it in the afternoon light."
render lighthouse espeak en-gb-x-rp+klatt3 150 "$long_text" \
  "$(printf '%s' "$long_text" | tr '[:lower:]' '[:upper:]' | tr -d '.,' | tr -s ' ')"
