"""The customer API's billing and privacy request bodies, defined once as msgspec Structs.

Why a module beside :mod:`engine.http.schemas`: the same idea (one type validates the body while it is
decoded and generates the OpenAPI document, so the two cannot disagree), kept apart so the message and
webhook types stay readable. The bodies are decoded with :func:`engine.http.schemas.decode` and the customer
API's codes (:data:`engine.http.schemas.CUSTOMER_CODES`), which keep the answers these routes gave before
the types: a missing or unknown field or a wrong type is 400 ``missing_field`` / ``unknown_field`` /
``invalid_type``; an amount, request type, e-mail or scheme in the wrong form is 400 ``invalid_request``
(the engine's ``InputError``); a malformed account id 400 ``invalid_id`` (as on the control port); a
malformed challenge id 401 ``challenge_invalid`` (what an unknown one gets).

The formats are the ones the engine enforces (it keeps its own checks: it has callers besides HTTP), and
the amount and id formats are the control port's types (:mod:`engine.http.control_schemas`), so one
format has one definition across both documents. What a schema cannot say stays with the engine: whether
an account or challenge exists, the rate limit on unverified requests, and the signature — see
:class:`SignedPrivacyRequest` for why its form is left to the engine.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from engine.http.control_schemas import AccountId, DsarType, Scheme, ThresholdUsd
from engine.http.params import SHAPES
from engine.http.schemas import Strict, whole

MAX_EMAIL = 320  # engine.privacy.requests.RequestDesk.request_by_email

# The e-mail of a data-subject request is compared with the accounts' addresses of record; the desk asks
# only for an "@" and at most 320 characters (an address that matches no account gets the same answer).
RequestEmail = Annotated[str, Meta(pattern="@", max_length=MAX_EMAIL,
                                   examples=["dev@example.com"],
                                   description="the account's e-mail address (it must contain '@', at "
                                               "most 320 characters)")]
ChallengeId = Annotated[str, Meta(pattern=whole(SHAPES["challenge"].pattern),
                                  description="the challenge_id of POST /v1/privacy/challenges")]


class ThresholdRequest(Strict):
    """``PUT /v1/balance/threshold``: below this balance, one ``account.low_balance`` webhook."""

    usd: ThresholdUsd


class PrivacyEmailRequest(Strict):
    """``POST /v1/privacy/requests``: a data-subject request by e-mail (verified by a mailed link)."""

    type: DsarType
    email: RequestEmail


class PrivacyChallengeRequest(Strict):
    """``POST /v1/privacy/challenges``: a message for a depositing wallet to sign."""

    account_id: AccountId
    type: DsarType


class SignedPrivacyRequest(Strict):
    """``POST /v1/privacy/signed-requests``: the signed challenge. Any attempt with a known challenge
    uses it up, one with a malformed signature included."""

    # The signature's form (65 bytes in hex) is deliberately not a schema bound: the desk takes the
    # challenge first and then reads the signature, so a malformed one is 401 invalid_signature and the
    # challenge is gone (a test pins this). A bound here would refuse it before the challenge is taken
    # and leave the challenge usable for another try.
    challenge_id: ChallengeId
    scheme: Scheme
    signature: Annotated[str, Meta(description="r | s | v, 65 bytes in hex ('0x' optional), as the "
                                               "wallet made it (else 401 invalid_signature; the "
                                               "challenge is used up by any attempt)")]


# Every request body of this module, in the order the customer document lists its components.
BODIES: tuple[type[msgspec.Struct], ...] = (ThresholdRequest, PrivacyEmailRequest,
                                            PrivacyChallengeRequest, SignedPrivacyRequest)
