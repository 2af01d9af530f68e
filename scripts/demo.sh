#!/usr/bin/env bash
# The demo: the pipeline on built-in phantom data. Outputs go under $2.
set -euo pipefail
bin=$1
out=$2
mkdir -p "$out"
step() { printf '\n== %s\n' "$*"; }
# A fixed pseudonym secret makes the demo's pseudonyms, split and metrics the same on every
# machine. Phantom data only: for real studies let `lumbar ingest` create a secret and keep it.
export LUMBAR_PSEUDONYM_SECRET=lumbar-demo-phantom-only

step "phantom studies (lumbar synth)"
synth_args=(--patients 80 --seed 7)  # 80: a test split of 8 patients
# rerun synth only when its code or arguments changed since the last demo
stamp=$(cat src/lumbar/synth/*.py <(echo "${synth_args[@]}") | sha256sum | cut -c1-16)
if [ "$(cat "$out/.synth-stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "unchanged since the last demo: reusing $out/studies"
else
  "$bin/lumbar" synth "$out/studies" "${synth_args[@]}" --force
  echo "$stamp" > "$out/.synth-stamp"  # beside the studies: ingest reads everything in them
fi
patients=("$out"/studies/*/)  # a glob, not ls | head: that pipe can fail under pipefail
first=${patients[0]}
"$bin/lumbar" montage "$first" "$out/montage.png" --labels "$out/studies/labels.csv"

step "ingest: the paper's 8 images per patient (lumbar ingest)"
"$bin/lumbar" ingest "$out/studies" "$out/ingest" --contact-sheet "$out/selected.png"

step "dataset, patient-level split and statistics (lumbar dataset)"
"$bin/lumbar" dataset build --images "$out/ingest" --labels "$out/studies/labels.csv" \
  --out "$out/dataset" --force
"$bin/lumbar" dataset stats "$out/dataset/manifest.csv" --out "$out/dataset-stats" --force

step "region of interest, Eq. 3 (lumbar roi)"
"$bin/lumbar" roi "$out/dataset/manifest.csv" --out "$out/dataset-roi" --force
axials=("$out"/ingest/*/*_45.png)
axial=${axials[0]}
"$bin/lumbar" roi --figure "$axial" --out "$out/roi-figure-phantom.png"
real=../shared/data/lumbar-mri-unlabelled/mri_00746a9b727e.png
if [ -f "$real" ]; then
  "$bin/lumbar" roi --figure "$real" --out "$out/roi-figure-real.png" \
    --credit "Image: Sudirman et al., Lumbar Spine MRI Dataset, Mendeley Data, doi:10.17632/k57fr854j2.2, CC BY 4.0"
fi

step "transfer learning, Procedure 1 (lumbar train / evaluate): EfficientNet-Lite0, ImageNet"
# The paper's defaults (DESIGN.md): batch 64, 50 epochs, lr 1e-3 frozen / 1e-5 fine-tuning,
# brightness [0.1, 0.7] + flips, lowest validation loss kept. The frozen layers run once per
# image and augmentation variant (lumbar.train), so each run takes about a minute on 2 cores.
# Fine-tuning (last block) starts from the frozen run's trunk and head, as in Keras.
runs="$out/runs"
rm -rf "$runs/effnet-frozen" "$runs/effnet-finetune"
"$bin/lumbar" train --manifest "$out/dataset-roi/manifest.csv" --target disc_abnormal \
  --backbone efficientnet_lite0 --weights imagenet --mode frozen --seed 0 --quiet \
  --out "$runs/effnet-frozen"
"$bin/lumbar" train --manifest "$out/dataset-roi/manifest.csv" --target disc_abnormal \
  --backbone efficientnet_lite0 --weights "$runs/effnet-frozen" --mode finetune --unfreeze 1 \
  --seed 0 --quiet --out "$runs/effnet-finetune"
"$bin/lumbar" evaluate "$out/runs/effnet-frozen" "$out/runs/effnet-finetune" --split test
"$bin/lumbar" compare "$out/runs/effnet-frozen" "$out/runs/effnet-finetune"

step "disc localiser: find and name every disc on sagittal MRI (lumbar localize)"
# bundled weights (offline); the phantom study's sagittal T2 (3 central slices fused, patient
# mm) and, when the shared data is here, one real SPIDER slice
localize_inputs=("$first")
spider=../shared/data/spider-sagittal/images/104_t2.png
[ -f "$spider" ] && localize_inputs+=("$spider")
"$bin/lumbar" localize "${localize_inputs[@]}" --out "$out/localize"
head -n 8 "$out/localize/discs.csv"
if [ -f "$spider" ]; then
  echo "Real slice: SPIDER lumbar spine MRI, van der Graaf et al., Sci Data 11:264 (2024), doi:10.1038/s41597-024-03090-w, CC BY 4.0"
fi

step "grading web app, FaLa (lumbar label)"
db="$out/fala.db"
if [ ! -f "$db" ]; then  # demo accounts only: real deployments prompt for passwords
  echo "demo-admin-pass" | "$bin/lumbar" label add-user demo-admin --role admin --db "$db" --password-stdin
  echo "demo-rater-pass" | "$bin/lumbar" label add-user demo --db "$db" --password-stdin
fi
echo "To grade the demo cohort in the browser:"
echo "  $bin/lumbar label serve --images $out/ingest --db $db"
echo "  then open http://localhost:8000/ and log in as demo / demo-rater-pass"
echo "  (admin: demo-admin / demo-admin-pass: users, consensus, export)"

echo
echo "Demo outputs are in $(cd "$out" && pwd):"
echo "  studies/            phantom DICOM studies, one folder per patient, labels.csv"
echo "  montage.png         one patient's series with its disc grades"
echo "  ingest/             the paper's 8 images per patient (pseudonymised), images.csv, ingest-report.csv"
echo "  selected.png        the selected images, one row per patient"
echo "  dataset/            manifest.csv with labels and a patient-level 75/15/10 split"
echo "  dataset-stats/      Table 5 counts, stenosis counts, charts like Figures 3-5"
echo "  localize/           discs found and named on a phantom study and a real slice: discs.csv, overlays"
echo "  dataset-roi/        the axial images cropped to the paper's ROI (Eq. 3), with their manifest"
echo "  roi-figure-*.png    the ROI grid drawn on a phantom and a real axial image (Figure 6)"
echo "  runs/effnet-*/      run folders: config.json, checkpoint.pt, history.csv,"
echo "                      learning-curve.png, metrics.json, confusion-test.png"
echo "  fala.db             the grading app's database with the demo accounts"

step "Grad-CAM and prediction on a new study (lumbar explain / predict / export)"
# Heat maps of every lesion image, with the pointing game (the generator knows each lesion's
# box), then one study end to end: series classification, Eq. 1-2 selection, ROI, per-disc
# probabilities and Grad-CAM, ending with a one-page summary.
"$bin/lumbar" explain "$runs/effnet-finetune" --manifest "$out/dataset-roi/manifest.csv" \
  --split test --lesions-only --lesions "$out/studies/lesions.csv" --ingest "$out/ingest" \
  --out "$out/explain" --force
"$bin/lumbar" export "$runs/effnet-finetune" --onnx "$out/effnet-finetune.onnx"
# a new patient that no model has seen (another seed)
"$bin/lumbar" synth "$out/new-study" --patients 1 --seed 2026 --force
"$bin/lumbar" predict "$out/new-study/patient-0001" --model "$runs/effnet-finetune" \
  --out "$out/predict"
grep ',L' "$out/new-study/labels.csv" | cut -d, -f2-3 | tr ',' ' ' \
  | sed 's/^/  ground truth (disc_state 0 = normal): /'

echo "  explain/            Grad-CAM overlays (lesion box in white), compare.png, pointing game"
echo "  effnet-finetune.onnx  the model as ONNX (checked against onnxruntime)"
echo "  predict/summary.html  the predicted study: per-disc states, images and heat maps"

step "the paper's whole study in miniature (lumbar experiment configs/quick.yaml)"
# Procedures 1-3 as one grid on phantom data, two seeds, then an HTML report with the paper's
# tables. Rerunning the demo skips the runs already done (delete the folder to start again).
"$bin/lumbar" experiment configs/quick.yaml --out "$out/experiment"
echo "  experiment/report.html  the study's results section: open it in a browser"

step "grade every disc with the bundled models (lumbar predict, no --model)"
# The bundled disc localiser and sagittal grader (trained on the SPIDER set only), offline:
# a real SPIDER slice, when the shared data is beside the checkout, and the new phantom study
# (its central sagittal T2 slices). One localiser batch over both; per-disc P(abnormal),
# Pfirrmann grade, bulging, herniation and narrowing, boxes and Grad-CAM per disc.
predict_inputs=("$out/new-study/patient-0001")
spider=../shared/data/spider-sagittal/images/104_t2.png
if [ -f "$spider" ]; then
  predict_inputs=("$spider" "${predict_inputs[@]}")
  "$bin/python" -c 'from lumbar.data.spider import SPIDER_CREDIT; print("Real slice: " + SPIDER_CREDIT)'
fi
"$bin/lumbar" predict "${predict_inputs[@]}" --out "$out/predict-bundled"
head -n 4 "$out/predict-bundled/predictions.csv"
echo "  predict-bundled/summary.html  every disc of a real slice and a phantom study, with boxes and Grad-CAM"
