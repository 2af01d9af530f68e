"""Sagittal per-disc grading: crops sized from the disc spacing, frozen ImageNet features and a
calibrated multi-task linear head for SPIDER's targets (`lumbar.grading.SAGITTAL_TARGETS`).
"""
