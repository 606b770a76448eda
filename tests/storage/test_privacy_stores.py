"""The privacy stores: data-subject requests (a state machine, checked with hypothesis), one-time links
and challenges, incidents and support cases with their retention sweeps."""

from __future__ import annotations

from collections import Counter

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from engine.errors import ChallengeInvalid, InputError, InvalidTransition, KeyUnavailable
from storage.account_keys import DATA, LEDGER, AccountKeys
from storage.dsar import DEADLINE_SECONDS, EXTENSION_SECONDS, DsarRecord, DsarStore
from storage.env import open_env
from storage.incidents import (
    AUTHORITY_DEADLINE_SECONDS,
    NOTICES_DB,
    WAITING_DB,
    Incident,
    IncidentStore,
    settled,
    with_notices,
)
from storage.keys import KeyRing, LocalKeyProvider
from storage.pseudonyms import Pseudonyms, token_text
from storage.records_base import SealedRecords
from storage.support import SupportCases
from storage.verification import Challenges, LinkTokens
from tests.storage.conftest import T0, FakeClock
from tests.storage.incident_layouts import CountingSealer, put_with_rows_without_counts

DAY = 86400
YEAR = 365 * DAY


@pytest.fixture
def env_keys(tmp_path):
    keys = KeyRing(tmp_path / "keys", LocalKeyProvider(tmp_path / "keys"))
    env = open_env(tmp_path / "privacy", map_size=16 << 20)
    yield env, keys
    env.close()


def _account_keys(keys_dir, ring: KeyRing, *accounts: str) -> AccountKeys:
    """The per-account data keys (``storage.account_keys``) with ``accounts`` made."""
    made = AccountKeys(keys_dir / "accounts", LocalKeyProvider(keys_dir),
                       Pseudonyms(ring.secret("pseudonym")))
    for account_id in accounts:
        made.create(account_id)
    return made


@pytest.fixture
def accounts(tmp_path, env_keys):
    return _account_keys(tmp_path / "keys", env_keys[1], "acc_1", "acc_2")


# --- data-subject requests ------------------------------------------------------------------------


class RequestLifecycle(RuleBasedStateMachine):
    """Any sequence of steps keeps the record where the state machine says, and refuses the rest."""

    @initialize(tmp=st.just(None))
    def start(self, tmp) -> None:
        import tempfile
        from pathlib import Path

        self.dir = Path(tempfile.mkdtemp())
        self.clock = FakeClock()
        self.env = open_env(self.dir / "privacy", map_size=8 << 20)
        keys = KeyRing(self.dir / "keys", LocalKeyProvider(self.dir / "keys"))
        self.store = DsarStore(self.env, keys.store_sealer("dsar"),
                               _account_keys(self.dir / "keys", keys, "acc_1"), clock=self.clock)
        self.model: dict[str, dict] = {}

    @rule(verified=st.booleans())
    def create(self, verified: bool) -> None:
        r = self.store.create("acc_1", "access", channel="wallet" if verified else "email",
                              verified_by="wallet:evm" if verified else None, opened_by="t",
                              verify_by=self.clock() + DAY)
        self.model[r.id] = {"status": "open" if verified else "awaiting_verification",
                            "deadline": self.clock() + DEADLINE_SECONDS, "extended": False}

    def _pick(self, data) -> str | None:
        return data.draw(st.sampled_from(sorted(self.model))) if self.model else None

    @rule(data=st.data())
    def verify(self, data) -> None:
        rid = self._pick(data)
        if rid is None:
            return
        if self.model[rid]["status"] == "awaiting_verification":
            self.store.verify(rid, "email_link")
            self.model[rid]["status"] = "open"
        else:
            with pytest.raises(InvalidTransition):
                self.store.verify(rid, "email_link")

    @rule(data=st.data())
    def extend(self, data) -> None:
        rid = self._pick(data)
        if rid is None:
            return
        m = self.model[rid]
        if m["status"] == "open" and not m["extended"]:
            self.store.extend(rid, "complex")
            m["extended"], m["deadline"] = True, m["deadline"] + EXTENSION_SECONDS
        else:
            with pytest.raises(InvalidTransition):
                self.store.extend(rid, "complex")

    @rule(data=st.data(), status=st.sampled_from(["completed", "refused"]))
    def close(self, data, status: str) -> None:
        rid = self._pick(data)
        if rid is None:
            return
        if self.model[rid]["status"] == "open":
            self.store.close(rid, status, "done")
            self.model[rid]["status"] = status
        else:
            with pytest.raises(InvalidTransition):
                self.store.close(rid, status, "done")

    @rule(days=st.integers(0, 40))
    def time_passes(self, days: int) -> None:
        self.clock.advance(days * DAY)
        self.store.sweep(self.clock())
        for rid, m in self.model.items():
            if m["status"] == "awaiting_verification" and self.store.get(rid).status == "lapsed":
                m["status"] = "lapsed"

    @invariant()
    def records_match_the_model(self) -> None:
        for rid, m in getattr(self, "model", {}).items():
            r = self.store.get(rid)
            assert (r.status, r.extended) == (m["status"], m["extended"])
            assert r.deadline == pytest.approx(m["deadline"])
            assert r.overdue(self.clock()) == (
                m["status"] in ("open", "awaiting_verification") and self.clock() > m["deadline"])

    def teardown(self) -> None:
        if hasattr(self, "env"):
            self.env.close()


TestRequestLifecycle = RequestLifecycle.TestCase
TestRequestLifecycle.settings = settings(max_examples=25, stateful_step_count=15, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])


def test_an_unverified_request_lapses_when_its_link_runs_out_and_a_closed_one_goes_after_a_year(
        env_keys, accounts):
    env, keys = env_keys
    clock = FakeClock()
    store = DsarStore(env, keys.store_sealer("dsar"), accounts, clock=clock)
    waiting = store.create("acc_1", "erasure", channel="email", verified_by=None, opened_by="c",
                           verify_by=T0 + DAY)
    done = store.create("acc_1", "access", channel="wallet", verified_by="wallet:tron",
                        opened_by="c")
    store.close(done.id, "completed", "exported")
    clock.advance(DAY + 1)
    assert store.sweep(clock()) == 1 and store.get(waiting.id).status == "lapsed"
    assert store.sweep(T0 + YEAR - 1) == 0  # kept: the record that we answered
    assert store.sweep(T0 + YEAR + 2 * DAY) == 2
    assert list(store.all()) == []


def test_a_request_type_outside_the_policy_is_refused(env_keys, accounts):
    env, keys = env_keys
    with pytest.raises(InputError):
        DsarStore(env, keys.store_sealer("dsar"), accounts).create("acc_1", "selfie", channel="email",
                                                         verified_by=None, opened_by="c")



def test_closing_a_request_that_is_not_open_names_the_staff_action_that_was_refused(env_keys, accounts):
    """Staff read this on POST /v1/dsar/{id}/fulfil or /refuse (409): it said "cannot completed a
    request that is awaiting_verification"."""
    env, keys = env_keys
    store = DsarStore(env, keys.store_sealer("dsar"), accounts)
    pending = store.create("acc_1", "access", channel="email", verified_by=None, opened_by="c",
                           verify_by=T0 + DAY)
    with pytest.raises(InvalidTransition, match="^cannot fulfil a request that is awaiting_verification$"):
        store.close(pending.id, "completed", "done")
    with pytest.raises(InvalidTransition, match="^cannot refuse a request that is awaiting_verification$"):
        store.close(pending.id, "refused", "no")

def test_a_request_names_its_account_while_the_ledger_keeps_it_after_the_record_is_swept(
        env_keys, accounts):
    """The 90-day sweep shreds the account's data key only; the ledger key (7 years) still opens the
    request's copy of the id, so staff can answer a request the holder opened before the sweep."""
    env, keys = env_keys
    store = DsarStore(env, keys.store_sealer("dsar"), accounts)
    asked = store.create("acc_1", "access", channel="wallet", verified_by="wallet:evm",
                         opened_by="customer")
    accounts.shred("acc_1", (DATA,))  # the record's sweep
    assert store.get(asked.id).account_id == "acc_1"
    assert store.close(asked.id, "completed", "exported").account_id == "acc_1"
    later = store.create("acc_1", "erasure", channel="wallet", verified_by="wallet:evm",
                         opened_by="staff")  # a former holder's request: the ledger copy alone
    assert store.get(later.id).account_id == "acc_1"
    accounts.shred("acc_1", (LEDGER,))  # erased, or the ledger's last row swept (7 years)
    assert [r.account_id for r in store.all()] == ["", ""]
    assert {r.subject for r in store.all()} == {asked.subject}


def test_a_request_of_an_older_version_gets_its_ledger_copy_when_the_store_opens(env_keys, accounts):
    env, keys = env_keys
    store = DsarStore(env, keys.store_sealer("dsar"), accounts)
    asked = store.create("acc_1", "access", channel="email", verified_by="email_link",
                         opened_by="customer")
    older = SealedRecords(env, keys.store_sealer("dsar"), b"dsar", DsarRecord, "request",
                          encode=lambda r, key: {**store._encode(r, key), "ledger_sealed_account": b""})
    older.put(store.get(asked.id))  # as an older version wrote it: under the data key alone
    assert not store.get(asked.id).ledger_sealed_account
    reopened = DsarStore(env, keys.store_sealer("dsar"), accounts)
    assert reopened.get(asked.id).ledger_sealed_account
    accounts.shred("acc_1", (DATA,))
    assert reopened.get(asked.id).account_id == "acc_1"


# --- links and challenges -------------------------------------------------------------------------


def test_a_link_token_works_once_for_its_purpose_until_it_expires(env_keys, accounts):
    env, keys = env_keys
    links = LinkTokens(env, accounts)
    token, expires = links.issue("confirm_email", "acc_1:x", 60, now=T0, account_id="acc_1")
    assert links.redeem("confirm_email", token, now=T0 + 59) == "acc_1:x"
    with pytest.raises(ChallengeInvalid):
        links.redeem("confirm_email", token, now=T0 + 1)  # used
    late, _ = links.issue("confirm_email", "acc_2:y", 60, now=T0, account_id="acc_2")
    with pytest.raises(ChallengeInvalid, match="expired"):
        links.redeem("confirm_email", late, now=T0 + 61)
    other, _ = links.issue("verify_request", "dsr_1", 60, now=T0, account_id="acc_1")
    with pytest.raises(ChallengeInvalid, match="purpose"):
        links.redeem("confirm_email", other, now=T0)
    kept, _ = links.issue("verify_request", "dsr_2", 60, now=T0, account_id="acc_1")
    assert links.sweep(T0 + 61) == 1  # the expired unused one; nothing else is left
    with pytest.raises(ChallengeInvalid):
        links.redeem("verify_request", kept, now=T0)
    raw = (env.path() + "/data.mdb")
    assert token.encode() not in open(raw, "rb").read()  # only digests are stored


def test_a_challenge_is_consumed_by_the_first_take_and_refused_after_its_expiry(env_keys, accounts):
    env, keys = env_keys
    challenges = Challenges(env, accounts)
    c = challenges.issue("acc_1", "access", 900, now=T0)
    assert "acc_1" in c.message and "access" in c.message
    assert challenges.take(c.challenge_id, now=T0 + 899).message == c.message
    with pytest.raises(ChallengeInvalid):
        challenges.take(c.challenge_id, now=T0 + 1)
    old = challenges.issue("acc_1", "access", 900, now=T0)
    with pytest.raises(ChallengeInvalid, match="expired"):
        challenges.take(old.challenge_id, now=T0 + 901)


def test_a_former_accounts_challenge_lives_under_its_ledger_key(env_keys, accounts):
    """The record's sweep shreds the data key: a challenge staff issue for the former holder is sealed
    under the ledger key, opens without the data key, is deleted by the erasure and swept on expiry."""
    env, keys = env_keys
    challenges = Challenges(env, accounts)
    accounts.shred("acc_1", (DATA,))  # the record's 90-day sweep
    with pytest.raises(KeyUnavailable):
        challenges.issue("acc_1", "access", 60, now=T0)  # the data key is gone
    taken = challenges.issue("acc_1", "access", 60, now=T0, purpose=LEDGER)
    assert challenges.take(taken.challenge_id, now=T0).account_id == "acc_1"
    erased = challenges.issue("acc_1", "erasure", 60, now=T0, purpose=LEDGER)
    assert challenges.forget_account("acc_1") == 1
    with pytest.raises(ChallengeInvalid):
        challenges.take(erased.challenge_id, now=T0)
    late = challenges.issue("acc_1", "erasure", 60, now=T0, purpose=LEDGER)
    challenges.issue("acc_1", "access", 60, now=T0, purpose=LEDGER)  # never taken
    accounts.shred("acc_1", (LEDGER,))  # erased (or the ledger's last row swept)
    with pytest.raises(ChallengeInvalid, match="unknown"):
        challenges.take(late.challenge_id, now=T0)
    challenges.issue("acc_2", "access", 60, now=T0, purpose=LEDGER)
    challenges.issue("acc_2", "access", 600, now=T0, purpose=LEDGER)
    assert challenges.sweep(T0 + 61) == 2  # acc_1's unreadable one and acc_2's expired one


def test_erasure_deletes_the_accounts_links_and_challenges_and_a_shredded_key_voids_any_copy(
        env_keys, accounts):
    env, keys = env_keys
    links, challenges = LinkTokens(env, accounts), Challenges(env, accounts)
    mine = [links.issue("confirm_email", "acc_1:x", 60, now=T0, account_id="acc_1")[0],
            links.issue("verify_request", "dsr_1", 60, now=T0, account_id="acc_1")[0]]
    theirs, _ = links.issue("confirm_email", "acc_2:y", 60, now=T0, account_id="acc_2")
    chl = challenges.issue("acc_1", "erasure", 60, now=T0)
    other = challenges.issue("acc_2", "access", 60, now=T0)
    assert links.forget_account("acc_1") == 2 and challenges.forget_account("acc_1") == 1
    for token in mine:
        with pytest.raises(ChallengeInvalid):
            links.redeem("confirm_email", token, now=T0)
    with pytest.raises(ChallengeInvalid):
        challenges.take(chl.challenge_id, now=T0)
    assert links.redeem("confirm_email", theirs, now=T0) == "acc_2:y"  # another account's: kept
    assert challenges.take(other.challenge_id, now=T0).account_id == "acc_2"
    # an entry issued after the erasure started (or restored from a backup) opens no more once the
    # account's data key is gone: refused as unknown, and swept by its readable expiry
    late, _ = links.issue("confirm_email", "acc_1:z", 60, now=T0, account_id="acc_1")
    accounts.shred("acc_1")
    with pytest.raises(ChallengeInvalid, match="unknown"):
        links.redeem("confirm_email", late, now=T0)
    links.issue("confirm_email", "acc_2:w", 60, now=T0, account_id="acc_2")
    assert links.sweep(T0 + 61) == 1


def test_a_request_names_its_account_by_pseudonym_and_loses_the_id_with_the_accounts_key(
        env_keys, accounts):
    env, keys = env_keys
    clock = FakeClock()
    store = DsarStore(env, keys.store_sealer("dsar"), accounts, clock=clock)
    asked = store.create("acc_1", "erasure", channel="wallet", verified_by="wallet:evm",
                         opened_by="customer")
    subject = asked.subject
    assert subject.startswith("psn_") and "acc_1" not in subject
    assert store.get(asked.id).account_id == "acc_1"
    accounts.shred("acc_1")  # the erasure
    clock.advance(60)
    closed = store.close(asked.id, "completed", "erasure carried out")  # closed after the erasure
    assert (closed.account_id, closed.subject, closed.status) == ("", subject, "completed")
    view = store.get(asked.id).view(clock())
    assert view["account_id"] == "" and view["subject"] == subject and not view["overdue"]
    assert "sealed_account" not in view
    assert store.get(asked.id).verified_at == T0 and store.get(asked.id).closed_at == T0 + 60
    assert store.create("acc_2", "access", channel="email", verified_by=None,
                        opened_by="c").account_id == "acc_2"


# --- incidents and support -------------------------------------------------------------------------


def test_an_incident_deadline_is_72_hours_after_detection_and_closed_ones_go_after_5_years(
        env_keys):
    env, keys = env_keys
    clock = FakeClock()
    store = IncidentStore(env, keys.store_sealer("incidents"), clock=clock)
    incident = store.open("leak", T0 - 3600, ["*"], "officer")
    assert incident.authority_deadline == T0 - 3600 + AUTHORITY_DEADLINE_SECONDS
    assert not incident.authority_deadline_close(T0)
    assert incident.authority_deadline_close(T0 + 50 * 3600)
    assert incident.authority_overdue(T0 + 72 * 3600)
    store.close(incident.id)
    assert store.sweep(T0 + 5 * YEAR - DAY) == 0
    assert store.sweep(T0 + 5 * YEAR + DAY) == 1


def test_support_cases_are_kept_for_resolution_plus_one_year_and_unresolved_ones_are_kept(env_keys):
    env, keys = env_keys
    clock = FakeClock()
    cases = SupportCases(env, keys.store_sealer("support"), clock=clock)
    resolved = cases.open("Receipts missing", "Since Tuesday no receipts.", opened_by="support")
    open_case = cases.open("Invoice", "Please resend.", opened_by="support", account_id="acc_1")
    cases.add_message(resolved.id, "out", "Fixed on our side.", "support")
    cases.resolve(resolved.id)
    with pytest.raises(InvalidTransition):
        cases.add_message(resolved.id, "in", "thanks", "support")
    assert cases.sweep(T0 + YEAR - 1) == 0
    assert cases.sweep(T0 + 10 * YEAR) == 1  # the resolved one; the open one stays however old
    assert [c.id for c in cases.all()] == [open_case.id]
    raw = open(env.path() + "/data.mdb", "rb").read()
    assert b"Please resend." not in raw  # sealed at rest


def test_a_support_case_loses_its_account_subject_and_texts_with_the_accounts_data_key(
        env_keys, accounts):
    """Correspondence is personal data: once the account it names is erased (its data key destroyed),
    no key left opens the account id, the subject line or a text of the case, on any page; staff keep
    when it was opened, answered and resolved, by whom, and the account's pseudonym."""
    env, keys = env_keys
    cases = SupportCases(env, keys.store_sealer("support"), accounts, clock=FakeClock())
    case = cases.open("Texts from Jane Roe", "CORRESPz3 she keeps texting me", opened_by="support",
                      account_id="acc_1")
    cases.add_message(case.id, "out", "CORRESPz3 we are on it", "support")
    assert cases.get(case.id).account_id == "acc_1"  # read as written while the account lives
    assert cases.get(case.id).messages[1][3] == "CORRESPz3 we are on it"
    accounts.shred("acc_1")  # the erasure
    with env.begin(db=env.open_db(b"support_cases")) as txn:
        blob = bytes(txn.get(case.id.encode()))
    stored = keys.store_sealer("support").open(blob, case.id.encode())
    assert b"acc_1" not in stored and b"CORRESPz3" not in stored and b"Jane Roe" not in stored
    erased = cases.get(case.id)
    assert (erased.account_id, erased.subject, erased.pseudonym) == (
        "", "", token_text(accounts.token("acc_1")))
    assert [m[1:] for m in erased.messages] == [["in", "support", ""], ["out", "support", ""]]
    with pytest.raises(InvalidTransition):
        cases.add_message(case.id, "in", "hello again", "support")
    assert cases.resolve(case.id).resolved_at  # its retention can still start


def test_an_incident_names_an_erased_account_by_its_pseudonym_only(env_keys, accounts):
    """An incident is kept 5 years past closure: once an affected account is erased (its data key
    destroyed) no key left opens its id in the record; the pseudonym still shows it was affected."""
    env, keys = env_keys
    store = IncidentStore(env, keys.store_sealer("incidents"), accounts, clock=FakeClock())
    incident = store.open("laptop lost", T0 - 60, ["acc_1", "acc_2"], "privacy")
    assert store.get(incident.id).accounts == ["acc_1", "acc_2"]
    accounts.shred("acc_1")
    with env.begin(db=env.open_db(b"incidents")) as txn:
        stored = keys.store_sealer("incidents").open(bytes(txn.get(incident.id.encode())),
                                                     incident.id.encode())
    assert b"acc_1" not in stored and b"acc_2" not in stored
    kept = store.close(incident.id)
    assert kept.accounts == ["acc_2"]
    assert kept.subjects == [token_text(accounts.token(a)) for a in ("acc_1", "acc_2")]
    assert "sealed_accounts" not in kept.view(T0)


def test_a_full_privacy_store_refuses_new_links_with_store_full_and_keeps_the_issued_ones(tmp_path, accounts):
    from engine.errors import StoreFull
    from storage.full import FULL_REFUSALS

    small = open_env(tmp_path / "small", map_size=64 << 10)  # a few hundred links fill it
    links = LinkTokens(small, accounts)
    before = FULL_REFUSALS["privacy"]
    issued = []
    with pytest.raises(StoreFull, match="privacy"):
        for i in range(100_000):
            issued.append(links.issue("confirm_email", f"acc_1:{i}", 3600, now=T0, account_id="acc_1")[0])
    assert issued and FULL_REFUSALS["privacy"] == before + 1
    small.close()
    # nothing issued was lost; with room again (a larger map: [engine] privacy_map_size_mb) the links
    # still redeem, first to last, and new ones are issued. (In a map full to its last page even a delete can be
    # refused: LMDB copies the pages it changes.)
    roomy = open_env(tmp_path / "small", map_size=1 << 20)
    links = LinkTokens(roomy, accounts)
    for i in (0, len(issued) // 2, len(issued) - 1):
        assert links.redeem("confirm_email", issued[i], now=T0) == f"acc_1:{i}"
    links.issue("confirm_email", "acc_1:again", 3600, now=T0, account_id="acc_1")
    roomy.close()


# --- an incident's customer notice: counted by what became of each mail -----------------------------

OLD_INCIDENT_FIELDS = ("id", "summary", "detected_at", "opened_at", "opened_by", "accounts",
                       "authority_deadline", "authority_notified_at", "authority_reference",
                       "customers_notified_at", "customers_notified", "closed_at", "subjects",
                       "sealed_accounts")  # a record as the version before notice outcomes wrote it


PER_MAIL_FIELDS = (*OLD_INCIDENT_FIELDS, "customers_not_delivered", "customers_unsent",
                   "notice_mails")  # a record as the version that counted per mail wrote it


def test_an_incident_written_before_notice_outcomes_loads_with_its_count_and_none_waiting(env_keys):
    env, keys = env_keys
    old = SealedRecords(env, keys.store_sealer("incidents"), b"incidents", Incident, "incident",
                        encode=lambda i, key: {k: getattr(i, k) for k in OLD_INCIDENT_FIELDS})
    old.put(Incident(id="inc_old", summary="leak", detected_at=T0, opened_at=T0, opened_by="officer",
                     accounts=["*"], customers_notified_at=T0, customers_notified=3))
    store = IncidentStore(env, keys.store_sealer("incidents"), clock=FakeClock())
    loaded = store.get("inc_old")
    assert (loaded.public()["customers_notified"], loaded.public()["customers_queued"],
            loaded.public()["customers_unsent"], loaded.public()["customers_not_delivered"]) == \
        (3, 0, 0, 0)
    assert loaded.notified_by_older_version  # whom it mailed was not recorded: nobody is mailed again
    # and it takes a customer's notice queued by this version, counted beside the old count
    mail = "ab" * 16
    after = store.notices_queued("inc_old", {"psn_1": mail})
    assert after.public()["customers_queued"] == 1 and not after.notified_by_older_version
    settled_now = store.settle_notices(after, {mail: "sent"}.__getitem__)
    assert store.get("inc_old").public()["customers_notified"] == 4 == \
        settled_now.public()["customers_notified"]


def test_an_incident_written_by_the_per_mail_version_loads_and_settles_its_waiting_mails(env_keys):
    env, keys = env_keys
    old = SealedRecords(env, keys.store_sealer("incidents"), b"incidents", Incident, "incident",
                        encode=lambda i, key: {k: getattr(i, k) for k in PER_MAIL_FIELDS})
    waiting = ["01" * 16, "02" * 16]
    old.put(Incident(id="inc_mid", summary="leak", detected_at=T0, opened_at=T0, opened_by="officer",
                     accounts=["*"], customers_notified_at=T0, customers_notified=1,
                     customers_unsent=1, notice_mails=b"".join(bytes.fromhex(m) for m in waiting)))
    store = IncidentStore(env, keys.store_sealer("incidents"), clock=FakeClock())
    loaded = store.get("inc_mid")
    assert loaded.notified_by_older_version
    assert {k: loaded.public()[k] for k in ("customers_notified", "customers_queued",
                                             "customers_unsent")} == \
        {"customers_notified": 1, "customers_queued": 2, "customers_unsent": 1}
    outcomes = {waiting[0]: "sent", waiting[1]: "not_delivered"}
    store.settle_notices(loaded, outcomes.__getitem__)
    shown = store.get("inc_mid").public()
    assert {k: shown[k] for k in ("customers_notified", "customers_queued", "customers_unsent",
                                  "customers_not_delivered")} == \
        {"customers_notified": 2, "customers_queued": 0, "customers_unsent": 1,
         "customers_not_delivered": 1}


def test_a_notice_the_outbox_refused_is_undone_for_its_customers_only(env_keys):
    """The mailing was recorded, then the outbox refused it: the customers it named are as before
    (none, or their earlier failed outcome), others keep theirs, and the first notice time goes back."""
    env, keys = env_keys
    store = IncidentStore(env, keys.store_sealer("incidents"), clock=FakeClock())
    incident = store.open("leak", T0 - 60, ["acc_1", "acc_2"], "officer")
    first = store.notices_queued(incident.id, {"acc_1": "01" * 16})
    first = store.settle_notices(first, {"01" * 16: "unsent"}.__getitem__)
    before = store.get(incident.id, holders=True)
    store.notices_queued(incident.id, {"acc_1": "02" * 16, "acc_2": "03" * 16})
    undone = store.notices_not_queued(incident.id, before, ["acc_1", "acc_2"])
    shown = store.get(incident.id, holders=True)
    assert (shown.notice_of("acc_1"), shown.notice_of("acc_2")) == ("unsent", None)
    assert undone.customers_notified_at == before.customers_notified_at > 0
    assert undone.public()["customers_unsent"] == 1 and undone.public()["customers_queued"] == 0
    fresh = store.open("leak", T0 - 60, ["acc_1"], "officer")
    untouched = store.get(fresh.id, holders=True)
    store.notices_queued(fresh.id, {"acc_1": "04" * 16})
    assert store.notices_not_queued(fresh.id, untouched, ["acc_1"]).customers_notified_at == 0


def test_a_refused_notice_to_a_holder_whose_mail_waits_leaves_that_mail_waiting(env_keys):
    """Undoing a refused mailing puts back each holder's earlier entry, a waiting mail too (it was
    dropped: the holder then counted as never mailed, and its mail's outcome never learnt)."""
    env, keys = env_keys
    store = IncidentStore(env, keys.store_sealer("incidents"), clock=FakeClock())
    incident = store.open("leak", T0 - 60, ["acc_1"], "officer")
    store.notices_queued(incident.id, {"acc_1": "01" * 16})
    before = store.get(incident.id, holders=True)
    store.notices_queued(incident.id, {"acc_1": "02" * 16})
    store.notices_not_queued(incident.id, before, ["acc_1"])
    shown = store.get(incident.id, holders=True)
    assert shown.customer_mails == {"acc_1": "01" * 16}
    assert store.get(incident.id).public()["customers_queued"] == 1
    settled_now = store.settle_notices(store.get(incident.id), {"01" * 16: "sent"}.get)
    assert settled_now.public()["customers_notified"] == 1
    assert store.get(incident.id, holders=True).notice_of("acc_1") == "sent"


_CUSTOMERS = st.sampled_from([f"psn_{i}" for i in range(5)])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sets(_CUSTOMERS), st.dictionaries(_CUSTOMERS, st.sampled_from(
    ["sent", "not_delivered", "unsent"]))), min_size=1, max_size=8))
def test_each_customer_is_counted_once_by_their_latest_notice(rounds):
    """Rounds of notices queued (a customer mailed again replaces their earlier notice) and of mails
    ending (queued, then one final outcome): looked at after each, every customer mailed so far is
    counted exactly once, in what became of their latest notice."""
    incident = Incident(id="inc_c", summary="s", detected_at=T0, opened_at=T0, opened_by="o")
    final: dict[str, str] = {}  # mail id -> its outcome once it left the outbox
    latest: dict[str, str] = {}  # customer -> the id of their latest notice
    for n, (mailed, ends) in enumerate(rounds):
        mails = {c: f"{n:016x}{i:016x}" for i, c in enumerate(sorted(mailed))}
        incident = with_notices(incident, mails, T0)
        latest.update(mails)
        for customer, outcome in ends.items():  # the customer's latest mail ends (once)
            if customer in latest:
                final.setdefault(latest[customer], outcome)
        incident = settled(incident, lambda m: final.get(m, "queued"))
        counts = incident.public()
        expected = [final.get(m, "queued") for m in latest.values()]
        assert counts["customers_queued"] == expected.count("queued")
        assert counts["customers_notified"] == expected.count("sent")
        assert counts["customers_not_delivered"] == expected.count("not_delivered")
        assert counts["customers_unsent"] == expected.count("unsent")
        assert all(incident.notice_of(c) == final.get(m, "queued") for c, m in latest.items())


_OUTCOMES = st.sampled_from(["queued", "sent", "not_delivered", "unsent"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_OUTCOMES, min_size=1, max_size=4), min_size=1, max_size=12))
def test_settling_moves_each_mail_once_to_the_outcome_it_ends_in(histories):
    """Each mail goes through queued..., then stays in its final outcome (as an outbox receipt does);
    looked at any number of times, every mail is counted exactly once, in the outcome it ended in,
    and a waiting one is never counted as notified."""
    histories = [h[:next((i + 1 for i, o in enumerate(h) if o != "queued"), len(h))]
                 for h in histories]  # an outcome other than queued is final
    ids = [f"{i:032x}" for i in range(len(histories))]
    incident = Incident(id="inc_p", summary="s", detected_at=T0, opened_at=T0, opened_by="o",
                        notice_mails=b"".join(bytes.fromhex(m) for m in ids))
    for step in range(max(len(h) for h in histories)):
        now = {m: h[min(step, len(h) - 1)] for m, h in zip(ids, histories, strict=True)}
        incident = settled(incident, now.__getitem__)
        counts = incident.public()
        assert counts["customers_queued"] == sum(o == "queued" for o in now.values())
        assert counts["customers_notified"] == sum(o == "sent" for o in now.values())
        assert counts["customers_not_delivered"] == sum(o == "not_delivered" for o in now.values())
        assert counts["customers_unsent"] == sum(o == "unsent" for o in now.values())


# --- an incident's notice state: a row per holder, so a step writes what it changed ----------------


def _written(env, before: dict) -> dict:
    """The entries of the incident dbs that differ from ``before`` (added or changed)."""
    after = _incident_entries(env)
    return {k: v for k, v in after.items() if before.get(k) != v}


def _incident_entries(env) -> dict:
    entries = {}
    with env.begin() as txn:
        for name in (b"incidents", NOTICES_DB):
            entries.update({(name, bytes(k)): bytes(v) for k, v in txn.cursor(db=env.open_db(name))})
    return entries


def test_settling_one_mail_of_an_all_accounts_incident_writes_the_record_and_one_row(env_keys):
    """The record used to hold every holder's notice state and was rewritten whole at each settle:
    72 bytes per holder (7.2 MB a write at 100,000 accounts). A settle now writes the record and the
    row of each holder whose mail ended; the counts are the same."""
    env, keys = env_keys
    store = IncidentStore(env, keys.store_sealer("incidents"), clock=FakeClock())
    incident = store.open("leak", T0 - 60, ["*"], "officer")
    mails = {f"psn_{i:032x}": f"{i:032x}" for i in range(2000)}
    store.notices_queued(incident.id, mails)
    before = _incident_entries(env)
    ended = {mails["psn_" + f"{7:032x}"]: "sent"}
    settled_now = store.settle_notices(store.get(incident.id), lambda m: ended.get(m, "queued"))
    written = _written(env, before)
    assert {name for name, _ in written} == {b"incidents", NOTICES_DB} and len(written) == 2
    assert sum(len(v) for v in written.values()) < 1024
    shown = store.get(incident.id)
    assert shown == settled_now and shown.public()["customers_notified"] == 1
    assert shown.public()["customers_queued"] == 1999
    assert store.get(incident.id, holders=True).notice_of(f"psn_{7:032x}") == "sent"
    assert not any(name == b"incidents" and len(v) > 1024 for (name, _), v in before.items())


PER_CUSTOMER_FIELDS = (*PER_MAIL_FIELDS, "customer_mails", "customer_outcomes")  # as session 11 wrote


def test_an_incident_holding_its_notice_maps_itself_loads_and_moves_them_to_rows_once(env_keys):
    env, keys = env_keys
    old = SealedRecords(env, keys.store_sealer("incidents"), b"incidents", Incident, "incident",
                        encode=lambda i, key: {k: getattr(i, k) for k in PER_CUSTOMER_FIELDS})
    waiting = {"psn_a": "01" * 16, "psn_b": "02" * 16}
    old.put(Incident(id="inc_map", summary="leak", detected_at=T0, opened_at=T0, opened_by="officer",
                     accounts=["*"], customers_notified_at=T0, customer_mails=waiting,
                     customer_outcomes={"psn_c": "unsent", "psn_d": "sent"}))
    store = IncidentStore(env, keys.store_sealer("incidents"), clock=FakeClock())
    loaded = store.get("inc_map")
    counts = {k: loaded.public()[k] for k in ("customers_notified", "customers_queued",
                                              "customers_unsent")}
    assert counts == {"customers_notified": 1, "customers_queued": 2, "customers_unsent": 1}
    assert [loaded.notice_of(c) for c in ("psn_a", "psn_c", "psn_d", "psn_e")] == \
        ["queued", "unsent", "sent", None]

    store.settle_notices(loaded, {"01" * 16: "not_delivered"}.get)  # the first write: all to rows
    moved = store.get("inc_map", holders=True)
    assert [moved.notice_of(c) for c in ("psn_a", "psn_b", "psn_c", "psn_d")] == \
        ["not_delivered", "queued", "unsent", "sent"]
    with env.begin() as txn:
        record = msgpack.unpackb(keys.store_sealer("incidents").open(
            bytes(txn.get(b"inc_map", db=env.open_db(b"incidents"))), b"inc_map"))
    assert "customer_mails" not in record and "customer_outcomes" not in record
    before = _incident_entries(env)
    store.settle_notices(moved, {"02" * 16: "sent"}.get)  # from now on: the changed row only
    assert len([k for k in _written(env, before) if k[0] == NOTICES_DB]) == 1
    assert store.get("inc_map").public()["customers_notified"] == 2


def test_sweeping_an_incident_deletes_its_notice_rows(env_keys):
    env, keys = env_keys
    clock = FakeClock()
    store = IncidentStore(env, keys.store_sealer("incidents"), clock=clock)
    gone, kept = (store.open("leak", T0 - 60, ["*"], "officer") for _ in range(2))
    for incident in (gone, kept):
        store.notices_queued(incident.id, {"psn_a": "01" * 16, "psn_b": "02" * 16})
    store.close(gone.id)
    assert store.sweep(T0 + 5 * YEAR + DAY) == 1
    rows = [k for name, k in _incident_entries(env) if name == NOTICES_DB]
    assert len(rows) == 2 and all(k.startswith(kept.id.encode()) for k in rows)
    assert store.get(kept.id).public()["customers_queued"] == 2


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sets(_CUSTOMERS), st.dictionaries(_CUSTOMERS, st.sampled_from(
    ["sent", "not_delivered", "unsent"])), st.booleans()), min_size=1, max_size=6))
def test_the_store_keeps_the_notice_state_its_steps_make(env_keys, rounds):
    """Notices queued to holders without a waiting one (or queued and then refused: undone), mails
    ending: after each step the store's incident, read back from its record and rows, is the one the
    steps make in memory."""
    env, keys = env_keys
    store = IncidentStore(env, keys.store_sealer("incidents"), clock=FakeClock())
    incident = store.open("leak", T0 - 60, ["*"], "officer")
    model, final = store.get(incident.id, holders=True), {}
    for n, (mailed, ends, refused) in enumerate(rounds):
        due = sorted(c for c in mailed if model.notice_of(c) != "queued")  # as the desk mails
        mails = {c: f"{n:016x}{i:016x}" for i, c in enumerate(due)}
        before = store.get(incident.id, holders=True)
        store.notices_queued(incident.id, mails)
        if refused:
            store.notices_not_queued(incident.id, before, list(mails))
        else:
            model = with_notices(model, mails, T0)
        for customer, outcome in ends.items():
            if customer in model.customer_mails:
                final.setdefault(model.customer_mails[customer], outcome)
        model = settled(model, lambda m: final.get(m, "queued"))
        store.settle_notices(store.get(incident.id), lambda m: final.get(m, "queued"))
        shown = store.get(incident.id, holders=True)
        assert (shown.customer_mails, shown.customer_outcomes) == \
            (model.customer_mails, model.customer_outcomes)
        assert shown.public() == model.public()
        counted = store.get(incident.id)  # the record's counts, no row read: the same
        assert counted.public() == model.public() and counted.waits_for_mail == model.waits_for_mail
        assert counted.holder_counts == {s: n for s, n in Counter(
            [*["queued"] * len(model.customer_mails), *model.customer_outcomes.values()]).items()}
        with env.begin() as txn:  # the waiting index names exactly the waiting holders' rows
            waiting = [bytes(k) for k, _ in txn.cursor(db=env.open_db(WAITING_DB))
                       if bytes(k).startswith(incident.id.encode())]
        assert sorted(waiting) == sorted(f"{incident.id}/".encode() + shown.notice_rows[c].to_bytes(
            8, "big") for c in model.customer_mails)


def test_reading_an_incident_opens_its_record_only_and_a_settle_its_waiting_rows(env_keys):
    """Listing incidents and the stats read each one's counts from its record: they opened every
    holder's row (100,000 for an all-accounts incident: 0.5 s CPU a listing). A settle visits the rows
    whose mail waits, not the others."""
    env, keys = env_keys
    sealer = CountingSealer(keys.store_sealer("incidents"))
    store = IncidentStore(env, sealer, clock=FakeClock())
    incident = store.open("leak", T0 - 60, ["*"], "officer")
    mails = {f"psn_{i:032x}": f"{i:032x}" for i in range(2000)}
    store.notices_queued(incident.id, mails)
    waiting = {mails[f"psn_{i:032x}"] for i in (3, 5, 7)}
    store.settle_notices(store.get(incident.id), lambda m: "queued" if m in waiting else "sent")
    sealer.opened = 0
    listed = list(store.all())
    shown = store.get(incident.id)
    assert sealer.opened == 2
    assert (shown.public()["customers_notified"], shown.public()["customers_queued"]) == (1997, 3)
    assert listed == [shown] and shown.waits_for_mail
    sealer.opened = 0
    asked = []
    settled_now = store.settle_notices(shown, lambda m: asked.append(m) or "queued")
    assert sorted(asked) == sorted(waiting) and sealer.opened == 3 and settled_now is shown
    sealer.opened = 0
    settled_now = store.settle_notices(shown, lambda m: "unsent")
    assert sealer.opened == 3 + 1  # each waiting row read (not again under the lock), the record
    assert settled_now.public()["customers_unsent"] == 3 and not settled_now.waits_for_mail
    assert store.get(incident.id).public()["customers_queued"] == 0


def test_an_incident_with_rows_but_no_counts_loads_and_is_counted_at_its_first_look(env_keys):
    env, keys = env_keys
    sealer = CountingSealer(keys.store_sealer("incidents"))
    put_with_rows_without_counts(env, sealer, Incident(
        id="inc_rows", summary="leak", detected_at=T0, opened_at=T0, opened_by="officer",
        accounts=["*"], customers_notified_at=T0), [
        ["psn_a", "01" * 16, ""], ["psn_b", "", "sent"], ["psn_c", "02" * 16, ""],
        ["psn_d", "", "unsent"]])
    store = IncidentStore(env, sealer, clock=FakeClock())
    loaded = store.get("inc_rows")
    assert {k: loaded.public()[k] for k in ("customers_notified", "customers_queued",
                                             "customers_unsent")} == \
        {"customers_notified": 1, "customers_queued": 2, "customers_unsent": 1}
    assert loaded.notice_of("psn_a") == "queued" and not loaded.notified_by_older_version

    counted = store.settle_notices(loaded, {"01" * 16: "not_delivered"}.get)  # brought to counts
    assert counted.public()["customers_not_delivered"] == 1 and counted.holder_counts == \
        {"queued": 1, "sent": 1, "unsent": 1, "not_delivered": 1}
    sealer.opened = 0
    again = store.get("inc_rows")
    assert sealer.opened == 1 and again.public() == counted.public()
    store.notices_queued("inc_rows", {"psn_d": "03" * 16, "psn_e": "04" * 16})  # resent, and new
    shown = store.get("inc_rows", holders=True)
    assert shown.customer_mails == {"psn_c": "02" * 16, "psn_d": "03" * 16, "psn_e": "04" * 16}
    assert shown.customer_outcomes == {"psn_a": "not_delivered", "psn_b": "sent"}
    assert store.get("inc_rows").public()["customers_queued"] == 3
    assert sorted(shown.notice_rows.values()) == [0, 1, 2, 3, 4]

