"""Structured results where clinicians look: a DICOM SR (TID 1500), an overlay Secondary
Capture series, a FHIR DiagnosticReport, and STOW-RS back to the study's PACS.

`model` holds the tool-independent result; `sr`, `overlay`, `fhir` write it; `stow` sends the
DICOM objects; `identity` decides whose identifiers they carry; `export` ties them together
for `lumbar predict`.
"""
