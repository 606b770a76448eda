"""Every exception smsroute raises, under one root.

The tree::

    SmsrouteError
    ├── InputError                  the caller sent something we will not accept (HTTP 4xx)
    │   ├── InvalidNumber           not a valid E.164 mobile number (HTTP 422)
    │   ├── InvalidBody             empty, oversize or un-encodable body (HTTP 422 / 413)
    │   ├── UnknownSender           sender ID not registered for the account (HTTP 403)
    │   ├── InvalidUrl              not an absolute http(s) URL with a plain ASCII host (HTTP 422)
    │   │   └── DestinationNotAllowed   a webhook URL that does not lead to a public address (HTTP 422)
    │   ├── MalformedMessage        bytes that are not a valid actor message (msgpack, tag, schema)
    │   ├── ConfigError             a config file or routing table that does not validate
    │   ├── InvalidTransition       a step a record's state machine does not allow (HTTP 409)
    │   │   └── HolderNotNotified   a lawful order's disclosure before its notice reached the holder (409)
    │   │       └── NoticePending   ... the notice is queued, not yet sent: retry once it is
    │   │   └── HoldEnded           a held body asked of a hold that ended: its copies are shredded (409)
    │   ├── LedgerConflict          a ledger key already recorded with other details (HTTP 409)
    │   │   ├── DepositConflict     (chain, tx hash) recorded with another amount, account or address
    │   │   └── AdjustmentConflict  an adjustment's key recorded with another amount or reason
    │   ├── HoldConflict            a hold's Idempotency-Key used with other content (HTTP 409)
    │   └── NoticeTooShort          a policy change effective less than 30 days after notice (422)
    ├── AuthError                   unknown or revoked API key / operator token (HTTP 401)
    │   └── VerificationFailed      a data-subject request's proof failed (HTTP 401)
    │       ├── InvalidSignature    the wallet signature does not verify
    │       ├── ChallengeInvalid    unknown, expired or already used challenge / link (replay)
    │       └── WalletNotRecognised the signing wallet never deposited to the account
    ├── AccountError
    │   ├── UnknownAccount          (HTTP 404)
    │   │   └── UnknownApiKey       no such key on this account (HTTP 404)
    │   ├── LastApiKey              revoking it would leave the account without a key (HTTP 409)
    │   ├── AccountRestricted       processing restricted or account closed (HTTP 403)
    │   ├── AccountUnconfirmed      [email] require_confirmation and the address is unconfirmed (403)
    │   └── InsufficientBalance     prepaid balance below the message price (HTTP 402)
    ├── RoutingError
    │   └── NoRoute                 no carrier serves the destination (HTTP 422)
    ├── OverloadedError             in-flight limit reached; retry later (HTTP 503)
    │   ├── CarriersSaturated       the route's carriers cannot take more within the admission horizon
    │   └── ClusterUnavailable      a worker or the NATS link did not answer in time (HTTP 503)
    │       ├── WorkerUnavailable   ... refused before sending: the account's worker is not ready
    │       └── OutcomeUnknown      ... after the submit went out: it may have been accepted
    ├── RateLimited                 too many unverified requests from one source (HTTP 429)
    ├── StorageError                a store could not make the write durable (HTTP 503)
    │   ├── StoreFull               the LMDB map or the disk is full
    │   ├── CorruptRecord           a record failed to decode or authenticate
    │   └── KeyUnavailable          a data key is missing or the master key is wrong
    ├── CarrierError                a carrier link failed in a way the caller should see
    └── StartupError                the engine cannot start as configured (``smsroute``: one line, exit 2)
        ├── DataDirInUse            another engine holds the data directory's lock
        ├── DataDirUnusable         the data directory cannot be created, read or written
        └── CannotListen            an HTTP port is taken or cannot be bound

A full disk at start-up is ``StoreFull``; a missing config file or a TLS file that does not load is
``ConfigError``.

Each class carries a stable machine-readable ``code`` used in API error bodies and reject messages, so
``error_from_code(code, message)`` can rebuild the typed exception on the far side of an actor hop.

An error's ``message`` is for the operator (logs, the control port, the embedding API) and may name the
cluster's processes (``w1``); ``public_message`` is what the customer API and its edges answer. A
``ClusterUnavailable`` says only that part of the cluster is unavailable unless it was given a text
written for customers (``public=``, or ``WorkerUnavailable`` and ``OutcomeUnknown``, whose messages are).
"""

from __future__ import annotations


class SmsrouteError(Exception):
    """Root of every smsroute error. ``code`` is stable and safe to show to API clients."""

    code = "internal_error"
    maybe_sent = False  # True only for an error after which the request may have taken effect
    message_is_public = True  # False: the message may name internals; customers get PUBLIC_MESSAGE

    def __init__(self, message: str = "", *, public: str | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self._public = public

    @property
    def public_message(self) -> str:
        """What a customer is shown (the customer API): the message, unless it may name internals."""
        if self._public is not None:
            return self._public
        return self.message if self.message_is_public else self.PUBLIC_MESSAGE

    PUBLIC_MESSAGE = "internal error"


class InputError(SmsrouteError, ValueError):
    code = "invalid_request"


class InvalidNumber(InputError):
    code = "invalid_number"


class InvalidBody(InputError):
    code = "invalid_body"


class BodyTooLarge(InvalidBody):
    code = "body_too_large"


class UnknownSender(InputError):
    code = "unknown_sender"


class InvalidUrl(InputError):
    code = "invalid_url"


class DestinationNotAllowed(InvalidUrl):
    code = "destination_not_allowed"


class MalformedMessage(InputError):
    code = "malformed_message"


class ConfigError(InputError):
    code = "invalid_config"


class InvalidTransition(InputError):
    code = "invalid_transition"


class HolderNotNotified(InvalidTransition):
    code = "holder_not_notified"


class NoticePending(HolderNotNotified):
    code = "notice_pending"


class MailNotConfigured(InvalidTransition):
    """A notice asked for that could only be logged: no mail server is configured (``[email] host``).
    409: it is the engine's set-up, not the request, that must change."""

    code = "mail_not_configured"


class HoldEnded(InvalidTransition):
    """The hold exists (its record and audit trail are kept a year) but ended: released or expired, its
    copies shredded. 409, not 404 (the id is right; asking again cannot help) nor 503 (nothing failed)."""

    code = "hold_ended"


class LedgerConflict(InputError):
    code = "ledger_conflict"


class DepositConflict(LedgerConflict):
    code = "deposit_conflict"


class AdjustmentConflict(LedgerConflict):
    code = "adjustment_conflict"


class HoldConflict(InputError):
    """The Idempotency-Key of a hold placement was used before with another kind, reason, reference,
    end, messages or account: answering the first hold would hide that the request differs."""

    code = "hold_conflict"


class NoticeTooShort(InputError):
    code = "notice_too_short"


class AuthError(SmsrouteError):
    code = "unauthorized"


class VerificationFailed(AuthError):
    code = "verification_failed"


class InvalidSignature(VerificationFailed):
    code = "invalid_signature"


class ChallengeInvalid(VerificationFailed):
    code = "challenge_invalid"


class WalletNotRecognised(VerificationFailed):
    code = "wallet_not_recognised"


class AccountError(SmsrouteError):
    code = "account_error"


class UnknownAccount(AccountError, KeyError):
    code = "unknown_account"

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message
        return self.message


class UnknownApiKey(UnknownAccount):
    code = "unknown_api_key"


class LastApiKey(AccountError):
    code = "last_api_key"


class AccountRestricted(AccountError):
    code = "account_restricted"


class AccountUnconfirmed(AccountError):
    code = "account_unconfirmed"


class InsufficientBalance(AccountError):
    code = "insufficient_balance"


class RoutingError(SmsrouteError):
    code = "routing_error"


class NoRoute(RoutingError):
    code = "no_route"


class OverloadedError(SmsrouteError):
    code = "overloaded"


class CarriersSaturated(OverloadedError):
    code = "carriers_saturated"


class ClusterUnavailable(OverloadedError):
    """A worker or the NATS link did not answer in time; the request may be retried. Its message names
    the workers for the operator; a customer is told only ``PUBLIC_MESSAGE``."""

    code = "cluster_unavailable"
    message_is_public = False
    PUBLIC_MESSAGE = ("part of the cluster is unavailable right now; retry after the Retry-After "
                      "seconds")


class WorkerUnavailable(ClusterUnavailable):
    """The worker holding the account is not ready (starting, restarting, hung, stopping, or not heard
    of): the submit was refused before anything was sent or reserved, so retrying it is safe."""

    message_is_public = True  # (written for the customer: names no worker)


class OutcomeUnknown(ClusterUnavailable):
    """A submit went out but its answer did not come back in time (its worker died, a NATS server lost
    the reply): the message may or may not have been accepted. Unlike the other errors it may have sent
    something (``maybe_sent``), so an ``Idempotency-Key`` retry must not submit it again."""

    maybe_sent = True
    message_is_public = True  # (written for the customer: names no worker)


class RateLimited(SmsrouteError):
    code = "rate_limited"


class StorageError(SmsrouteError):
    code = "storage_error"


class StoreFull(StorageError):
    code = "store_full"


class CorruptRecord(StorageError):
    code = "corrupt_record"


class KeyUnavailable(StorageError):
    code = "key_unavailable"


class CarrierError(SmsrouteError):
    code = "carrier_error"


class StartupError(SmsrouteError):
    code = "cannot_start"


class DataDirInUse(StartupError):
    code = "data_dir_in_use"


class KeysDirInUse(StartupError):
    code = "keys_dir_in_use"


class DataDirUnusable(StartupError):
    code = "data_dir_unusable"


class CannotListen(StartupError, OSError):
    code = "cannot_listen"


def _all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


# a code names the class that declares it, not a subclass sharing it: "cluster_unavailable" from another
# process is a ClusterUnavailable (nothing sent), never an OutcomeUnknown (which may have sent something,
# and only the side that waited can know)
_BY_CODE: dict[str, type[SmsrouteError]] = {c.code: c for c in _all_subclasses(SmsrouteError)
                                            if "code" in vars(c)}
_BY_CODE[SmsrouteError.code] = SmsrouteError


def error_from_code(code: str, message: str, public: str | None = None) -> SmsrouteError:
    """Rebuild the typed error named by ``code`` (an unknown code gives the root class).

    >>> type(error_from_code("no_route", "nothing serves +999")).__name__
    'NoRoute'
    >>> error_from_code("cluster_unavailable", "w1 did not answer").maybe_sent
    False
    """
    return _BY_CODE.get(code, SmsrouteError)(message, public=public)
