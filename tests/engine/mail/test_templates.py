"""Every template renders, and no rendered mail can carry a phone number or a secret."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import InputError
from engine.mail.templates import ALERT_KINDS, TEMPLATES, check_safe, render

T = 1_790_000_000.0
PARAMS = {
    "account_confirmation": {"link": "https://api.example.com/v1/email/confirm?token=" + "ab" * 32,
                             "expires_at": T},
    "security_alert": {"kind": "api_key_created", "at": T},
    "price_change": {"changes": [("DE", 75000, 80000), ("other destinations", None, 60000)],
                     "effective_at": T},
    "policy_change": {"effective_at": T + 31 * 86400, "summary": "We keep request logs 60 days."},
    "dsar_verification": {"request_id": "dsr_1", "type": "erasure", "expires_at": T,
                          "link": "https://api.example.com/v1/privacy/verify?token=" + "cd" * 32},
    "dsar_opened": {"request_id": "dsr_1", "type": "access", "deadline": T},
    "dsar_extended": {"request_id": "dsr_1", "type": "access", "deadline": T, "reason": "big"},
    "dsar_closed": {"request_id": "dsr_1", "type": "access", "status": "completed"},
    "erasure_completed": {"request_id": "dsr_1"},
    "incident_notice": {"incident_id": "inc_1", "summary": "A log was exposed.", "detected_at": T},
    "lawful_order_notice": {"authority": "subpoena", "reference": "SUB-12", "until": T,
                            "whole_account": True, "messages": 2},
}


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_each_template_renders_a_subject_and_a_text_naming_the_account(template):
    subject, text = render(template, account_id="acc_12345678deadbeef", **PARAMS[template])
    assert subject
    if template not in ("price_change", "policy_change", "erasure_completed"):
        assert "acc_12345678deadbeef" in text  # (not mailings to every account, nor an erasure's)


def test_the_erasure_confirmation_names_the_request_and_nothing_of_the_erased_account():
    subject, text = render("erasure_completed", request_id="dsr_1")
    assert "dsr_1" in subject and subject.endswith(": completed") and "erasure" in text
    assert "acc_" not in subject + text


@pytest.mark.parametrize("kind", sorted(ALERT_KINDS))
def test_each_security_alert_kind_has_its_own_subject(kind):
    subject, _ = render("security_alert", account_id="acc_1", kind=kind, at=T)
    assert kind.replace("_", " ") in subject


@pytest.mark.parametrize("leak", ["+4915112345678", "4915112345678", "+49 151 1234 5678",
                                  "sk_live_abcdef", "whsec_abcdef", "op_" + "A" * 43])
def test_a_number_or_a_secret_in_staff_written_text_is_refused(leak):
    with pytest.raises(InputError):
        render("incident_notice", account_id="acc_1", incident_id="inc_1", detected_at=T,
               summary=f"Details: {leak}")


@given(st.from_regex(r"\+?[1-9][0-9]{7,14}", fullmatch=True))
def test_no_e164_number_passes_the_guard(number):
    with pytest.raises(InputError):
        check_safe(f"see {number} now")
