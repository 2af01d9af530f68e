"""Datasets: from labelled images to training batches.

Modules (imported on demand; `dataset` and `sampler` import torch):
    manifest       the manifest CSV contract (DESIGN.md): read, validate, write
    build          `lumbar dataset build`: ingest output + labels -> manifest
    splits         patient-level stratified train/val/test splits and folds
    stats          Table 5 and Figures 3-5, 9 of any manifest
    targets        the training targets (disc_abnormal, disc_state, ..., *_binary)
    roi            the paper's region of interest (Eq. 3) and simpler crops
    imageio        PNG/JPEG (8/16-bit) and DICOM reading
    augment        the paper's augmentation, seeded per (epoch, image)
    dataset        the torch Dataset with its decode cache, and the loader
    sampler        the one batch sampler (seeded global batches, shared by every loop)

A backbone's input definition (`Preprocessing`) belongs to its weights: `lumbar.models`.
"""
