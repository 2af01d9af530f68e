"""`lumbar ingest`: DICOM folder or PACS -> the paper's 8 de-identified images per patient.

The stage in order: `read` (headers, pixel data), `index` (a resumable SQLite index of a
folder's headers), `pacs` (a DICOMweb client, the same index from a PACS), `classify` (each
series' view: axial T2, sagittal T2, myelography, or other), `select` (the paper's Eq. 1-2
frame selection), `deid` and `export` (de-identified PNG and DICOM), and `pipeline`, which runs
them and writes OUT/images.csv and OUT/ingest-report.csv.

Importing this package is cheap; pydicom is imported by the functions that need it.
"""

from lumbar.ingest.pipeline import (
    IMAGES_COLUMNS,
    IMAGES_CSV,
    REPORT_COLUMNS,
    REPORT_CSV,
    IngestedImage,
    IngestOptions,
    IngestSummary,
    NoUsableImages,
    ReportRow,
    SeriesDecision,
    format_explanation,
    ingest,
)

__all__ = [
    "IMAGES_COLUMNS",
    "IMAGES_CSV",
    "REPORT_COLUMNS",
    "REPORT_CSV",
    "IngestOptions",
    "IngestSummary",
    "IngestedImage",
    "NoUsableImages",
    "ReportRow",
    "SeriesDecision",
    "format_explanation",
    "ingest",
]
