#!/usr/bin/env bash
# The demo: a small phantom cohort and a montage of one patient. Outputs go under $2.
set -euo pipefail
bin=$1
out=$2
mkdir -p "$out"
"$bin/lumbar" synth "$out/studies" --patients 12 --seed 7 --force
first=$(ls -d "$out"/studies/*/ | head -n 1)
"$bin/lumbar" montage "$first" "$out/montage.png" --labels "$out/studies/labels.csv"
echo
echo "Demo outputs are in $(cd "$out" && pwd):"
echo "  studies/      phantom DICOM studies, one folder per patient, labels.csv"
echo "  montage.png   one patient's series with its disc grades"
