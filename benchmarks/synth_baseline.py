"""How hard is the phantom task? Logistic regression on 32x32 axial disc slices, by patient.

The paper's binary target (disc_abnormal: any disc state other than normal) on the five
Eq. 2-selected axial T2 slices of each patient, downsampled to 32x32, with patient-grouped
5-fold cross-validation. A useful phantom gives a baseline F1 clearly below 1.0.

    python benchmarks/synth_baseline.py [--cohort DIR] [--patients 181]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lumbar.grading import LEVELS
from lumbar.synth import synthesize_cohort
from lumbar.visualize.montage import windowed

SIZE = 32


def load(cohort: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features (n, 1024), labels (n,), patient groups (n,) of every patient's five discs."""
    with open(cohort / "labels.csv", newline="") as handle:
        labels = {
            (r["patient_id"], r["level"]): int(r["disc_state"]) > 0 for r in csv.DictReader(handle)
        }
    frames = {3 * lv.eq2_index + 2 * (lv.eq2_index - 1): lv for lv in LEVELS}  # Eq. 2
    x, y, groups = [], [], []
    for path in sorted(cohort.rglob("IM*")):
        head = pydicom.dcmread(path, stop_before_pixels=True)
        if head.SeriesDescription != "T2 AX" or head.InstanceNumber not in frames:
            continue
        ds = pydicom.dcmread(path)
        image = windowed(ds.pixel_array, (float(ds.WindowCenter), float(ds.WindowWidth)))
        small = Image.fromarray((image * 255).astype(np.uint8)).resize(
            (SIZE, SIZE), Image.Resampling.BILINEAR
        )
        x.append(np.asarray(small, dtype=np.float32).ravel() / 255)
        level = frames[head.InstanceNumber]
        y.append(labels[(str(head.PatientID), level.value)])
        groups.append(str(head.PatientID))
    return np.stack(x), np.asarray(y, dtype=int), np.asarray(groups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, help="an existing `lumbar synth` output")
    parser.add_argument("--patients", type=int, default=181)
    args = parser.parse_args()
    work = None
    cohort = args.cohort
    if cohort is None:
        work = Path(tempfile.mkdtemp(prefix="lumbar-baseline-"))
        cohort = work / "cohort"
        synthesize_cohort(cohort, patients=args.patients, seed=0, progress=False)
    try:
        x, y, groups = load(cohort)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    scores, majority = [], []
    for train, test in folds.split(x, y, groups):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
        model.fit(x[train], y[train])
        scores.append(f1_score(y[test], model.predict(x[test])))
        majority.append(f1_score(y[test], np.ones_like(y[test])))
    print(f"discs: {len(y)} from {len(set(groups))} patients, abnormal {y.mean():.1%}")
    print(
        f"logistic regression, 32x32, patient 5-fold F1: {np.mean(scores):.3f} "
        f"± {np.std(scores):.3f}  (folds: {', '.join(f'{s:.3f}' for s in scores)})"
    )
    print(f"always-abnormal F1 for reference:              {np.mean(majority):.3f}")


if __name__ == "__main__":
    main()
