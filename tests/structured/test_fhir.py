"""The FHIR R4 DiagnosticReport: validated by fhir.resources, one Observation per disc and
finding, coded body sites, probabilities that read back exactly."""

from __future__ import annotations

import json

from helpers.structured import predicted_study, rich

from lumbar.structured.fhir import fhir_json, read_fhir
from lumbar.structured.identity import Identity


def test_report_validates_and_round_trips(predicted) -> None:
    prediction, _, _ = predicted_study(predicted, Identity.RESEARCH)
    prediction = rich(prediction)
    text = fhir_json(prediction)
    report = json.loads(text)
    assert report["resourceType"] == "DiagnosticReport" and report["status"] == "preliminary"
    observations = report["contained"]
    assert len(observations) == len(report["result"]) == 5 * 5
    assert {o["id"] for o in observations} == {r["reference"][1:] for r in report["result"]}
    l45 = [o for o in observations if o["id"].startswith("disc-l4-l5-")]
    assert {o["bodySite"]["coding"][0]["code"] for o in l45} == {"84020006"}
    assert all(o["component"][0]["valueQuantity"]["code"] == "1" for o in observations)
    assert report["imagingStudy"][0]["identifier"]["value"] == (
        "urn:oid:" + prediction.identity.study_instance_uid
    )
    read = read_fhir(text)  # validates again on reading
    for disc in prediction.discs:
        assert [(f.name, f.value, f.probability) for f in read[disc.level]] == [
            (f.name, f.value, f.probability) for f in disc.findings
        ]


def test_subject_is_the_identity_modes_patient(predicted) -> None:
    for mode in Identity:
        prediction, _, _ = predicted_study(predicted, mode)
        report = json.loads(fhir_json(prediction))
        assert report["subject"]["identifier"]["value"] == prediction.identity.patient_id
