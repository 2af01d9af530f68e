"""Datasets: from labelled images to training batches.

Modules (imported on demand; only `dataset` imports torch):
    manifest       the manifest CSV contract (DESIGN.md): read, validate, write
    build          `lumbar dataset build`: ingest output + labels -> manifest
    splits         patient-level stratified train/val/test splits and folds
    stats          Table 5 and Figures 3-5, 9 of any manifest
    targets        the training targets (disc_abnormal, disc_state, ..., *_binary)
    preprocessing  a backbone's input definition, declared by its weights
    imageio        PNG/JPEG (8/16-bit) and DICOM reading
    augment        the paper's augmentation, seeded per (epoch, image)
    dataset        the torch Dataset with its decode cache, and the loader
"""
