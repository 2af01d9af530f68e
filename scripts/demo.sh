#!/usr/bin/env bash
# The demo: the pipeline on built-in phantom data. Outputs go under $2.
set -euo pipefail
bin=$1
out=$2
mkdir -p "$out"
step() { printf '\n== %s\n' "$*"; }

step "phantom studies (lumbar synth)"
"$bin/lumbar" synth "$out/studies" --patients 24 --seed 7 --force
first=$(ls -d "$out"/studies/*/ | head -n 1)
"$bin/lumbar" montage "$first" "$out/montage.png" --labels "$out/studies/labels.csv"

step "ingest: the paper's 8 images per patient (lumbar ingest)"
"$bin/lumbar" ingest "$out/studies" "$out/ingest" --contact-sheet "$out/selected.png"

echo
echo "Demo outputs are in $(cd "$out" && pwd):"
echo "  studies/            phantom DICOM studies, one folder per patient, labels.csv"
echo "  montage.png         one patient's series with its disc grades"
echo "  ingest/             the paper's 8 images per patient (pseudonymised), images.csv, ingest-report.csv"
echo "  selected.png        the selected images, one row per patient"
