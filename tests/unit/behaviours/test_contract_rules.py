"""Cross-field rules of the contracts that a JSON Schema alone cannot state."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from safebus.schemas import dvds, education, marac
from safebus.schemas.examples import EXAMPLES


def _example(event_type: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLES[event_type]().model_dump_json())
    return data


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"criterion": "high-risk", "dash_yes_count": 13}, "14 or more"),
        ({"criterion": "professional-judgement", "professional_judgement_rationale": None}, "written rationale"),
        ({"criterion": "repeat", "prior_referral_on": None}, "prior referral"),
    ],
)
def test_marac_referral_criterion_must_be_evidenced(edit: dict[str, Any], message: str) -> None:
    """Each MARAC criterion carries its evidence: a 14+ DASH, a rationale, or the prior referral date."""
    with pytest.raises(ValidationError, match=message):
        marac.MaracReferralSubmitted.model_validate_json(json.dumps(_example("marac.referral-submitted") | edit))


def test_marac_referral_on_professional_judgement_with_rationale_is_valid() -> None:
    """Professional judgement with a rationale is a valid criterion whatever the DASH count."""
    referral = _example("marac.referral-submitted") | {
        "criterion": "professional-judgement", "dash_yes_count": 6,
        "professional_judgement_rationale": "Recent strangulation disclosed; victim very frightened.",
    }
    parsed = marac.MaracReferralSubmitted.model_validate_json(json.dumps(referral))
    assert parsed.criterion is marac.Criterion.PROFESSIONAL_JUDGEMENT


def test_dvds_disclosure_names_its_recipient() -> None:
    """A decision to disclose must say to whom."""
    with pytest.raises(ValidationError, match="names who"):
        dvds.DvdsDecision.model_validate_json(json.dumps(_example("dvds.decision") | {"disclosed_to": None}))


def test_term_dates_run_forwards() -> None:
    """A term cannot end before it starts."""
    with pytest.raises(ValidationError, match="before first"):
        education.DateRange.model_validate({"first": "2026-10-23", "last": "2026-09-03"}, strict=False)


def test_models_refuse_unknown_fields_and_coercion() -> None:
    """Contracts are closed and strict: no extra fields, no silent type coercion."""
    enrolment = _example("education.enrolment-recorded")
    with pytest.raises(ValidationError, match="Extra inputs"):
        education.EnrolmentRecorded.model_validate_json(json.dumps(enrolment | {"parent_phone": "01234"}))
    with pytest.raises(ValidationError, match="valid string"):
        education.EnrolmentRecorded.model_validate_json(json.dumps(enrolment | {"setting_urn": 900101}))
