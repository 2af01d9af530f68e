"""DICOM handling for `lumbar ingest`: header index, series classification, the paper's slice
selection (Eq. 1-2), de-identification, PNG/DICOM export and a DICOMweb (PACS) client.

Importing this package is cheap; pydicom is imported by the submodules that need it.
"""
