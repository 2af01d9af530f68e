"""Figures people look at, drawn from the pixels and numbers they are given.

`montage` (one study's series), `contact_sheet` (an ingest's selection), `roi_figure` (the
paper's Figures 6-7), `overlays` (Grad-CAM heat maps and image grids, Figures 17-18) and
`charts` (learning curves, confusion matrices, the dataset's Figures 3-5 and 9). Reading the
data they show belongs to the stages; matplotlib is imported by the functions that draw.
"""
