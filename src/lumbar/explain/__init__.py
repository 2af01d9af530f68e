"""`lumbar explain`: where a run's classifier looked (Grad-CAM, Figures 17-18), and whether
that is where the lesion is (the pointing game).

`gradcam` computes the maps, `pointing` scores them against lesion boxes, and `run` explains
a run's images into a folder; the drawing is `lumbar.visualize.overlays`.
"""

from lumbar.explain.gradcam import CamResult, GradCAM, resolve_layer
from lumbar.explain.pointing import PointingResult, box_share, point_in_box, pointing_game
from lumbar.explain.run import (
    ExplainItem,
    class_names,
    explain,
    explain_run,
    items_from_manifest,
    items_from_paths,
    load_run,
    prepare_image,
    to_input,
)

__all__ = [
    "CamResult",
    "ExplainItem",
    "GradCAM",
    "PointingResult",
    "box_share",
    "class_names",
    "explain",
    "explain_run",
    "items_from_manifest",
    "items_from_paths",
    "load_run",
    "point_in_box",
    "pointing_game",
    "prepare_image",
    "resolve_layer",
    "to_input",
]
