"""DIR/summary.html of `lumbar predict`: every input's overlay, per-disc probabilities and
Grad-CAM maps on one self-contained page (images inlined), with the models' intended use and
credit, for a person to read."""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING, Any

from lumbar.data.spider import SPIDER_CREDIT

if TYPE_CHECKING:
    from lumbar.inference.batch import BatchOutcome, PredictModels

__all__ = ["INTENDED_USE", "summary_page"]

#: What every page says first (from the bundled models' cards).
INTENDED_USE = (
    "Research use only: not for clinical use. These are a model's suggestions, not a diagnosis; "
    "they have not been validated for any clinical decision and must not replace a "
    "radiologist's reading."
)


#: Longest side of the pictures inlined in the page (JPEG): the page stays small for many inputs;
#: the full-size PNGs are in each input's folder.
OVERLAY_SIDE = 480
CAM_SIDE = 128


def _img(data: bytes, alt: str, side: int, css: str = "") -> str:
    """A PNG shrunk to `side` pixels and inlined as JPEG."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as picture:
        picture = picture.convert("RGB")
        picture.thumbnail((side, side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=85)
    b64 = base64.b64encode(buffer.getvalue()).decode("ascii")
    cls = f" class='{css}'" if css else ""
    return f"<img{cls} src='data:image/jpeg;base64,{b64}' alt='{html.escape(alt)}'>"


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.3f}"


def _disc_rows(outcome: Any, with_axial: bool) -> str:
    esc = html.escape
    rows = []
    for d in outcome.prediction.get("discs", []):
        p = d.get("p_abnormal")
        probs = d.get("probabilities", {})
        grades = d.get("pfirrmann") or {}
        grade = max(grades, key=grades.get) if grades else ""
        axial = d.get("axial")
        axial_text = (
            f"{esc(axial['predicted'])} ({axial['probability']:.2f})" if axial is not None else ""
        )
        css = "abn" if p is not None and p >= 0.5 else ""
        rows.append(
            f"<tr class='{css}'><td>{esc(d['level'])}</td><td>{_fmt(p)}</td>"
            f"<td>{esc(str(grade))}</td><td>{_fmt(probs.get('bulging'))}</td>"
            f"<td>{_fmt(probs.get('herniation'))}</td><td>{_fmt(probs.get('narrowing'))}</td>"
            f"<td>{_fmt(d.get('confidence'))}</td>"
            + (f"<td>{axial_text}</td>" if with_axial else "")
            + "</tr>"
        )
    return "".join(rows)


def _section(outcome: Any) -> str:
    esc = html.escape
    pred = outcome.prediction
    parts = [f"<section><h2>{esc(outcome.name)} <small>{esc(outcome.kind)}</small></h2>"]
    if outcome.kind == "image" and outcome.given != outcome.name:  # a PNG/JPEG path as given
        parts.append(f"<p class='meta'>input: {esc(outcome.given)}</p>")
    for key in ("sagittal_error", "axial_error"):
        if pred.get(key):
            parts.append(f"<p class='warn'>{esc(key.split('_')[0])}: {esc(pred[key])}</p>")
    parts.append("<div class='row'>")
    if outcome.overlay:
        alt = f"{outcome.name} sagittal overlay"
        parts.append(_img(outcome.overlay, alt, OVERLAY_SIDE, "overlay"))
    with_axial = any(d.get("axial") for d in pred.get("discs", []))
    parts.append(
        "<table><tr><th>level</th><th>P(abnormal)</th><th>Pfirrmann</th><th>P(bulging)</th>"
        "<th>P(herniation)</th><th>P(narrowing)</th><th>localiser confidence</th>"
        + ("<th>axial run</th>" if with_axial else "")
        + f"</tr>{_disc_rows(outcome, with_axial)}</table></div>"
    )
    if pred.get("unnamed_discs"):
        parts.append(
            f"<p class='meta'>{pred['unnamed_discs']} more disc(s) found but not named or not "
            "confident: not graded.</p>"
        )
    cams = [
        f"<figure>{_img(data, f'{key} Grad-CAM', CAM_SIDE)}<figcaption>{esc(key)}</figcaption>"
        "</figure>"
        for key, data in outcome.gradcams.items()
    ]
    if cams:
        parts.append(f"<div class='cams'>{''.join(cams)}</div>")
    parts.append("</section>")
    return "".join(parts)


def summary_page(batch: BatchOutcome, models: PredictModels) -> str:
    """The HTML page (one file, no external resources)."""
    esc = html.escape
    done = [o for o in batch.inputs if not o.error]
    failed = [o for o in batch.inputs if o.error]
    failures = "".join(f"<li>{esc(o.given)}: {esc(o.error)}</li>" for o in failed)
    cards = "".join(
        f"<li><b>{esc(c.get('name', ''))}</b>: {esc(c.get('summary', ''))}"
        + (f"<br>Data: {esc(c['data'])}" if c.get("data") else "")
        + (f"<br>Intended use: {esc(c['intended_use'])}" if c.get("intended_use") else "")
        + "</li>"
        for c in models.cards
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>lumbar predictions</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #222; }}
h1 {{ font-size: 20px; margin: 0 0 6px; }} h2 {{ font-size: 16px; margin: 18px 0 6px; }}
h2 small {{ color: #777; font-weight: normal; }}
.use {{ background: #fff4e0; border: 1px solid #e0a040; padding: 8px 12px; }}
.row {{ display: flex; gap: 16px; align-items: flex-start; flex-wrap: wrap; }}
img.overlay {{ max-width: 420px; height: auto; border: 1px solid #ccc; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
tr.abn td {{ background: #fde8e8; }}
.cams {{ display: flex; flex-wrap: wrap; gap: 6px; margin-top: 8px; }}
figure {{ margin: 0; }} figure img {{ width: 128px; height: auto; display: block; }}
figcaption {{ font-size: 12px; text-align: center; }}
.warn {{ color: #a15c00; }} .meta {{ color: #666; font-size: 12px; }}
</style></head><body>
<h1>lumbar: per-disc predictions</h1>
<p class="use"><b>{esc(INTENDED_USE)}</b></p>
<p class="meta">{len(done)} of {len(batch.inputs)} inputs predicted, {batch.discs} discs,
in {batch.seconds:.1f} s. Boxes are coloured from green (P(abnormal) 0) to red (1);
abnormal means Pfirrmann grade 4 or 5, or a bulging or herniated disc.</p>
{f"<h2>Inputs without a prediction</h2><ul class='warn'>{failures}</ul>" if failed else ""}
{"".join(_section(o) for o in done)}
<h2>Models</h2>
<p>The bundled disc localiser and sagittal grader were trained on the SPIDER lumbar spine MRI
set (and phantom images): {esc(SPIDER_CREDIT)}.</p>
<ul>{cards}</ul>
</body></html>
"""
