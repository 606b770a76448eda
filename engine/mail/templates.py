"""Every customer e-mail the engine sends, as plain-text templates, and the guard that checks each one.

Why it exists: the policy lets us e-mail an account holder for a few reasons only (2.1: confirmation link,
security alerts, price-change notices; 5 notice of a lawful order; 7.5 data-subject requests; 9 incident
notices; 13 policy changes), and an e-mail must never carry a message body, a full destination number or a secret (API key, webhook
secret, operator token). Templates take only the facts they need — ids, dates, amounts, kinds — never a
message, and :func:`render` runs :func:`check_safe` on every rendered text, so staff-written text (an
incident summary, an extension reason) that contains a phone number or a key is refused before it is
queued.

One field is checked by a rule of its own: a lawful order's **reference** (:func:`check_reference`), which
the holder needs verbatim to challenge the order, and court case numbers often carry 8+ digits in a row
("2026-CV-123456789") that the number rule refuses. Rewriting it into a form the guard accepts (digits
grouped, say) would both change the reference the holder must quote and let a real number through in
pieces, so instead :func:`render` checks the rest of the mail with the reference left out, and the
reference itself by a narrower rule that keeps the guard's purpose: one line of at most
``REFERENCE_MAX`` letters, digits, spaces and ``./:_()#,§-`` (room for a reference, not for a message;
no ``+``, no line breaks); no secret; and no digit run that is a valid international number when read with a ``+`` (every
destination this gateway sends to is such a number, so a pasted destination, with or without its ``+``,
is refused, while a docket number that is not a dialable number passes). The order is refused at
placement (:func:`check_reference` via ``engine.lawful_notice``), before anything is placed.

One-time links (account confirmation, request verification) carry a random single-use token whose digest
is stored; it is the purpose of those mails, expires, and grants nothing but the one confirmation.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from engine.errors import InputError, InvalidNumber
from engine.numbers import MAX_DIGITS, parse_destination

__all__ = ["ALERT_KINDS", "AUTHORITY_KINDS", "REFERENCE_MAX", "TEMPLATES", "check_reference", "check_safe",
           "format_time", "format_usd", "render"]

# A run of 8+ digits not inside a word (an E.164 number, with or without +), or a spaced number.
_NUMBER = re.compile(r"(?<![\w])\+?\d{8,15}(?![\w])|\+\d[\d ().-]{7,}\d")
_SECRET = re.compile(r"sk_live_|sk_test_|whsec_|op_[A-Za-z0-9_-]{16,}")
REFERENCE_MAX = 100  # characters of a lawful order's reference (check_reference)
_REFERENCE_PUNCTUATION = frozenset(" ./:_()#,\u00a7-")
_DIGIT_RUN = re.compile(r"[0-9]{8,}")

ALERT_KINDS: dict[str, str] = {
    "api_key_created": "A new API key was created for your account.",
    "api_key_revoked": "An API key of your account was revoked; requests with it are refused.",
    "webhook_disabled": "Your webhook endpoint answered 410 Gone and was disabled; no status "
                        "callbacks are sent until you set a webhook URL again.",
    "webhook_secret_rotated": "Your webhook signing secret was rotated. The previous secret keeps "
                              "signing beside it for a bounded overlap (24 hours unless your "
                              "operator set another), then stops.",
    "failed_authentications": "We saw many failed authentication attempts against your account.",
}

_FOOTER = ("\n\n-- \nsmsroute. This message was sent to the address of record of your account. "
           "Privacy questions: privacy@smsroute.cc")


def format_time(at: float) -> str:
    """A UTC date and time without long digit runs (the number guard never trips on a date)."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


def format_usd(micro: int) -> str:
    return f"USD {micro // 1_000_000}.{micro % 1_000_000:06d}"


def check_safe(text: str) -> str:
    """``InputError`` if ``text`` holds something no e-mail may carry: a phone number or a secret."""
    if _NUMBER.search(text):
        raise InputError("an e-mail may not contain a phone number (or any 8+ digit run)")
    if _SECRET.search(text):
        raise InputError("an e-mail may not contain an API key, webhook secret or operator token")
    return text


def check_reference(reference: str) -> str:
    """``InputError`` unless ``reference`` may be shown verbatim in a mail as an order's reference (see
    the module docstring): one line of at most ``REFERENCE_MAX`` letters, digits, spaces and
    ``./:_()#,§-``, no secret, and no digit run that is a valid number read as ``+`` and those digits."""
    if not 0 < len(reference) <= REFERENCE_MAX or not all(
            ch.isalpha() or "0" <= ch <= "9" or ch in _REFERENCE_PUNCTUATION for ch in reference):
        raise InputError(f"a lawful order's reference is 1-{REFERENCE_MAX} letters, digits, spaces "
                         "and ./:_()#,§- (one line; it is shown to the account holder)")
    if _SECRET.search(reference):
        raise InputError("a lawful order's reference may not contain an API key, webhook secret or "
                         "operator token")
    for run in _DIGIT_RUN.findall(reference):
        if len(run) <= MAX_DIGITS and _is_number("+" + run):
            raise InputError("a lawful order's reference may not contain a phone number (a digit run "
                             "that is a valid number with a +)")
    return reference


def _is_number(text: str) -> bool:
    try:
        parse_destination(text)
    except InvalidNumber:
        return False
    return True


def _confirm(p: dict[str, Any]) -> tuple[str, str]:
    return ("Confirm your smsroute e-mail address",
            f"Please confirm that this is the address of smsroute account {p['account_id']}:\n\n"
            f"{p['link']}\n\nThe link works once, until {format_time(p['expires_at'])}. If you did "
            "not create an account, ignore this mail.")


def _alert(p: dict[str, Any]) -> tuple[str, str]:
    kind = p["kind"]
    if kind not in ALERT_KINDS:
        raise InputError(f"security alert kind is one of {', '.join(sorted(ALERT_KINDS))}")
    extra = f"\n\nAttempts counted: {p['count']} within {p['window']}." if "count" in p else ""
    return (f"smsroute security alert: {kind.replace('_', ' ')}",
            f"Account {p['account_id']}, {format_time(p['at'])}:\n\n{ALERT_KINDS[kind]}{extra}\n\n"
            "If this was not you, revoke your API keys and contact support@smsroute.cc.")


def _price(p: dict[str, Any]) -> tuple[str, str]:
    lines = "\n".join(f"  {c}: {format_usd(old)} -> {format_usd(new)} per segment"
                      if old is not None else f"  {c}: {format_usd(new)} per segment (new)"
                      for c, old, new in p["changes"])
    return ("smsroute price change",
            f"Prices per SMS segment change for these destinations from "
            f"{format_time(p['effective_at'])}:\n\n{lines}")


def _policy(p: dict[str, Any]) -> tuple[str, str]:
    return ("Changes to the smsroute privacy policy",
            f"Our privacy policy changes. The new version takes effect on "
            f"{format_time(p['effective_at'])}, at least 30 days after this notice.\n\n"
            f"What changes:\n{p['summary']}")


def _dsar_verify(p: dict[str, Any]) -> tuple[str, str]:
    return ("Confirm your data-subject request",
            f"We received a {p['type']} request for smsroute account {p['account_id']}. To confirm "
            f"it was you, open this link (once, until {format_time(p['expires_at'])}):\n\n"
            f"{p['link']}\n\nIf you did not ask for this, ignore this mail: nothing will happen.")


def _dsar_opened(p: dict[str, Any]) -> tuple[str, str]:
    return (f"Your data-subject request {p['request_id']}",
            f"Your {p['type']} request {p['request_id']} for account {p['account_id']} is verified. "
            f"We will answer by {format_time(p['deadline'])}.")


def _dsar_extended(p: dict[str, Any]) -> tuple[str, str]:
    return (f"Your data-subject request {p['request_id']}: more time needed",
            f"Your {p['type']} request {p['request_id']} for account {p['account_id']} is complex, "
            "so we extend our answer by "
            f"60 days, to {format_time(p['deadline'])} (policy 7.5).\n\nWhy: {p['reason']}")


def _dsar_closed(p: dict[str, Any]) -> tuple[str, str]:
    return (f"Your data-subject request {p['request_id']}: {p['status']}",
            f"Your {p['type']} request {p['request_id']} for account {p['account_id']} is "
            f"{p['status']}.\n\n{p.get('note') or ''}")


def _erasure_completed(p: dict[str, Any]) -> tuple[str, str]:
    # the account and its address are erased when this is queued: the request id is all it names
    return (f"Your data-subject request {p['request_id']}: completed",
            f"Your erasure request {p['request_id']} is completed. We erased the data we held about "
            "your account; only the ledger entries the law requires us to keep (7 years) remain, "
            "under a pseudonym and without identifiers. We will not write to you about this account "
            "again.")


def _incident(p: dict[str, Any]) -> tuple[str, str]:
    return ("smsroute security incident notice",
            f"We are informing you of a security incident that may affect account "
            f"{p['account_id']} (reference {p['incident_id']}), detected "
            f"{format_time(p['detected_at'])}.\n\n{p['summary']}\n\nQuestions: privacy@smsroute.cc")


#: What a lawful order can be (policy 5): the holder is told which kind, never the order's content
AUTHORITY_KINDS: dict[str, str] = {
    "subpoena": "a subpoena",
    "court_order": "a court order",
    "regulator_directive": "a regulator's directive",
}


def _lawful_order(p: dict[str, Any]) -> tuple[str, str]:
    # the kind of process and its reference, what it covers in counts: no body, number or order detail
    scope = "new messages of the account" if p["whole_account"] else ""
    if p["messages"]:
        scope = (scope + " and " if scope else "") + f"{p['messages']} message(s) already sent"
    return ("Notice of a lawful request for your smsroute data",
            f"We received {AUTHORITY_KINDS[p['authority']]} (reference {p['reference']}) that "
            f"requires us to preserve and disclose data of account {p['account_id']}: {scope}, "
            f"until {format_time(p['until'])} at the latest. We share only the minimum data "
            "responsive to it, and not before this notice was sent to you (privacy policy 5).\n\n"
            "If you wish to seek legal advice or challenge the request, do so now. Questions: "
            "privacy@smsroute.cc")


TEMPLATES: dict[str, Callable[[dict[str, Any]], tuple[str, str]]] = {
    "account_confirmation": _confirm,
    "security_alert": _alert,
    "price_change": _price,
    "policy_change": _policy,
    "dsar_verification": _dsar_verify,
    "dsar_opened": _dsar_opened,
    "dsar_extended": _dsar_extended,
    "dsar_closed": _dsar_closed,
    "erasure_completed": _erasure_completed,
    "incident_notice": _incident,
    "lawful_order_notice": _lawful_order,
}


#: Templates with a field checked by :func:`check_reference` instead of the number rule
REFERENCE_FIELDS: dict[str, str] = {"lawful_order_notice": "reference"}


def render(template: str, **params: Any) -> tuple[str, str]:
    """(subject, text) of ``template``, checked by :func:`check_safe`; a field named in
    ``REFERENCE_FIELDS`` is checked by :func:`check_reference` and the text without it by
    :func:`check_safe` (so a digit run is allowed there and nowhere else)."""
    field = REFERENCE_FIELDS.get(template)
    if field is not None:
        check_reference(params[field])
        check_safe("\n".join(TEMPLATES[template]({**params, field: "REF"})) + _FOOTER)
        subject, text = TEMPLATES[template](params)
        return subject, text + _FOOTER
    subject, text = TEMPLATES[template](params)
    return check_safe(subject), check_safe(text + _FOOTER)
