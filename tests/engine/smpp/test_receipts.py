"""Receipt parsing (TLVs and vendor text variants), id normalisation and the matching index."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from engine.smpp import pdu as p
from engine.smpp import receipts as r


def _deliver(text: str = "", esm_class: int = 0x04, **tlvs: bytes) -> p.Pdu:
    tags = {
        "rmid": p.TLV_RECEIPTED_MESSAGE_ID, "state": p.TLV_MESSAGE_STATE,
        "nec": p.TLV_NETWORK_ERROR_CODE, "payload": p.TLV_MESSAGE_PAYLOAD,
    }
    return p.Pdu(p.DELIVER_SM, 1, 0, {"esm_class": esm_class, "short_message": text.encode()},
                 {tags[k]: v for k, v in tlvs.items()})


VECTORS = [
    # (text, id, state, error)
    ("id:1234567890 sub:001 dlvrd:001 submit date:2311271230 done date:2311271231 stat:DELIVRD "
     "err:000 text:Hello", "1234567890", "DELIVRD", ""),
    ("id:0A1B2C sub:001 dlvrd:000 submit date:231127123045 done date:231127123101 stat:UNDELIV "
     "err:001 Text:Hi there", "0A1B2C", "UNDELIV", "001"),
    ("id:42 sub:001 dlvrd:000 submit date:2311271230 done date:2311271231 stat:EXPIRED err:000",
     "42", "EXPIRED", ""),
    ("ID:abc-1 SUB:001 DLVRD:000 SUBMIT DATE:2311271230 DONE DATE:2311271231 STAT:REJECTD "
     "ERR:0B TEXT:", "abc-1", "REJECTD", "0B"),
    ("id:77 sub:1 dlvrd:1 submit_date:2311271230 done_date:2311271231 stat:DELIVERED err:0 "
     "text:stat:UNDELIV id:99", "77", "DELIVRD", ""),
    ("id:5 stat:ACCEPTD", "5", "ACCEPTD", ""),
    ("id:6 stat:WHATEVER err:000", "6", "UNKNOWN", ""),
]


@pytest.mark.parametrize(("text", "mid", "state", "error"), VECTORS)
def test_receipt_texts_from_vendor_variants_parse(text, mid, state, error):
    got = r.parse_receipt(_deliver(text))
    assert (got.message_id, got.state, got.error) == (mid, state, error)


def test_tlvs_win_over_the_text():
    pdu = _deliver("id:1 stat:UNDELIV err:000", rmid=b"00FF\x00", state=bytes([2]))
    got = r.parse_receipt(pdu)
    assert (got.message_id, got.state) == ("00FF", "DELIVRD")


def test_a_network_error_code_tlv_gives_the_error_when_the_text_has_none():
    pdu = _deliver("", rmid=b"9", state=bytes([5]), nec=bytes([3, 0, 17]))
    assert r.parse_receipt(pdu).error == "3:17"


def test_a_receipt_in_message_payload_is_parsed():
    pdu = _deliver("", payload=b"id:12 sub:001 dlvrd:001 stat:DELIVRD err:000")
    assert r.parse_receipt(pdu).message_id == "12"


def test_a_receipt_without_an_id_raises_receipt_error():
    with pytest.raises(r.ReceiptError):
        r.parse_receipt(_deliver("sub:001 stat:DELIVRD"))


def test_a_receipt_without_a_state_raises_receipt_error():
    with pytest.raises(r.ReceiptError):
        r.parse_receipt(_deliver("id:12 sub:001"))


def test_only_deliver_sm_with_the_receipt_bit_is_a_receipt():
    assert r.is_receipt(_deliver("x"))
    assert not r.is_receipt(_deliver("x", esm_class=0x00))
    assert not r.is_receipt(p.Pdu(p.SUBMIT_SM, 1, 0, {"esm_class": 4}))


@given(
    st.from_regex(r"[0-9A-Za-z]{1,20}", fullmatch=True),
    st.sampled_from(sorted(r.CODE_BY_STATE)),
    st.sampled_from(["text:", "Text:", ""]),
    st.sampled_from(["2311271230", "231127123045"]),
    st.text(max_size=30),
)
def test_formatted_receipt_text_parses_back(mid, state, label, date, body):
    text = r.format_receipt_text(mid, state, "000", submit_date=date, done_date=date,
                                 text_label=label, text=body)
    got = r.parse_receipt(_deliver(text))
    assert (got.message_id, got.state, got.done_date) == (mid, state, date)


@given(st.integers(0, 2**64), st.integers(0, 6))
def test_an_id_matches_across_hex_decimal_and_leading_zeros(n, pad):
    index = r.IdIndex(ttl=60, max_size=10)
    index.put("0" * pad + format(n, "X"), "ref", now=0)
    assert index.get(str(n)) == ["ref"]
    assert index.get("0" * pad + format(n, "x")) == ["ref"]


def test_an_exact_match_beats_a_reinterpreted_one():
    index = r.IdIndex(ttl=60, max_size=10)
    index.put("10", "hex-ten-or-decimal-ten", now=0)
    index.put("16", "sixteen", now=0)
    assert index.pop("16") == ["sixteen"]
    assert index.pop("16") == ["hex-ten-or-decimal-ten"]  # "16" decimal == 0x10


def test_the_index_evicts_the_oldest_beyond_its_size_and_reports_it():
    index = r.IdIndex(ttl=60, max_size=2)
    assert index.put("a1", 1, now=0) == []
    index.put("a2", 2, now=0)
    assert index.put("a3", 3, now=0) == [1]
    assert len(index) == 2


def test_expiry_returns_every_value_past_its_deadline_in_order():
    index = r.IdIndex(ttl=10, max_size=10)
    index.put("1", "a", now=0)
    index.put("1", "b", now=1)
    index.put("2", "c", now=5)
    assert index.expire(now=10) == ["a", "b"]
    assert index.expire(now=15) == ["c"]
    assert len(index) == 0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("2311271230", 1701088200.0), ("231127123045", 1701088245.0), ("23112712", None),
     ("2313271230", None), ("abcdefghij", None)],
)
def test_smpp_dates_of_10_and_12_digits_parse(raw, expected):
    assert r.parse_smpp_date(raw) == expected


@given(st.text(max_size=200), st.binary(max_size=8), st.integers(0, 255))
def test_any_receipt_text_parses_or_raises_receipt_error_only(text, state_tlv, esm):
    tlvs = {"state": state_tlv} if state_tlv else {}
    try:
        got = r.parse_receipt(_deliver(text, esm_class=esm, **tlvs))
    except r.ReceiptError:
        return
    assert got.state in r.CODE_BY_STATE and got.message_id


class IdIndexMachine(RuleBasedStateMachine):
    """IdIndex against a plain model: exact ids (no hex/decimal reinterpretation), size and age bounds."""

    ids = st.sampled_from(["g1", "g2", "g3", "g4", "zz"])  # not hex, not decimal: exact keys only

    def __init__(self) -> None:
        super().__init__()
        self.index = r.IdIndex(ttl=10, max_size=3)
        self.model: dict[str, tuple[float, list]] = {}  # insertion-ordered like the index
        self.now = 0.0
        self.counter = 0

    @rule(mid=ids)
    def put(self, mid):
        self.counter += 1
        evicted = self.index.put(mid, self.counter, self.now)
        if mid in self.model:
            self.model[mid][1].append(self.counter)
        else:
            self.model[mid] = (self.now + 10, [self.counter])
        expected = []
        while len(self.model) > 3:
            expected.extend(self.model.pop(next(iter(self.model)))[1])
        assert evicted == expected

    @rule(mid=ids)
    def pop(self, mid):
        got = self.index.pop(mid)
        want = self.model.pop(mid, (0, None))[1]
        assert got == want

    @rule(step=st.floats(0, 6))
    def advance_and_expire(self, step):
        self.now += step
        got = self.index.expire(self.now)
        want = []
        for mid in [k for k, (deadline, _) in self.model.items() if deadline <= self.now]:
            want.extend(self.model.pop(mid)[1])
        assert sorted(got) == sorted(want)

    @invariant()
    def same_size(self):
        assert len(self.index) == len(self.model)


TestIdIndexMachine = IdIndexMachine.TestCase


@pytest.mark.parametrize("odd", ["\xb2", "\xb3", "\xb9", "1\xb2"])  # latin-1 superscripts: isdigit()
def test_ids_states_and_dates_with_superscript_digits_do_not_raise(odd):
    assert r.id_keys(odd) == [odd]
    assert r.normalise_state(odd) == "UNKNOWN"
    assert r.parse_smpp_date(odd * 10) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # an empty value is empty: the next field's label is not taken for it
        ("id: sub:001 dlvrd:001 submit date:2311271230 done date:2311271231 stat:DELIVRD err:000",
         {"id": "", "sub": "001", "dlvrd": "001", "submit_date": "2311271230",
          "done_date": "2311271231", "stat": "DELIVRD", "err": "000"}),
        ("id:5 sub:001 dlvrd:001 submit date: done date: stat:UNDELIV err: text:",
         {"id": "5", "sub": "001", "dlvrd": "001", "submit_date": "", "done_date": "",
          "stat": "UNDELIV", "err": ""}),
        # fields are known names: a word that ends in one is no field, unknown words are skipped
        ("msgid:9 id:5 foo:bar stat:DELIVRD", {"id": "5", "stat": "DELIVRD"}),
        ("id : 5  stat:  delivrd", {"id": "5", "stat": "delivrd"}),
        ("id:1 stat:DELIVRD text:id: stat:UNDELIV", {"id": "1", "stat": "DELIVRD"}),
    ],
)
def test_receipt_text_fields_are_found_by_their_names_and_an_empty_value_stays_empty(text, expected):
    assert r.parse_receipt_text(text) == expected


def test_a_receipt_whose_id_is_empty_is_refused_not_matched_under_the_next_field():
    """``id: sub:001`` was parsed as the id ``sub:001``: held as an early receipt, then unmatched."""
    with pytest.raises(r.ReceiptError):
        r.parse_receipt(_deliver("id: sub:001 dlvrd:001 stat:DELIVRD err:000"))


def test_a_receipt_whose_stat_is_empty_is_refused_not_read_as_a_final_state():
    with pytest.raises(r.ReceiptError):
        r.parse_receipt(_deliver("id:12 sub:001 dlvrd:000 stat: err:000"))


@pytest.mark.parametrize("rmid", [b"\x00", b"", b" \x00"])
def test_an_empty_receipted_message_id_tlv_falls_back_to_the_texts_id(rmid):
    """A TLV holding only its NUL raised ReceiptError: the receipt was lost though its text names the id."""
    got = r.parse_receipt(_deliver("id:12 sub:001 dlvrd:001 stat:DELIVRD err:000", rmid=rmid))
    assert (got.message_id, got.state) == ("12", "DELIVRD")


def test_an_empty_receipted_message_id_tlv_and_no_text_id_is_still_refused():
    with pytest.raises(r.ReceiptError):
        r.parse_receipt(_deliver("", rmid=b"\x00", state=bytes([2])))


def test_a_data_sm_with_the_receipt_bit_is_a_receipt_read_from_its_message_payload():
    pdu = p.Pdu(p.DATA_SM, 1, 0, {"esm_class": 0x04},
                {p.TLV_MESSAGE_PAYLOAD: b"id:0A sub:001 dlvrd:000 stat:EXPIRED err:000"})
    assert r.is_receipt(pdu)
    assert (r.parse_receipt(pdu).message_id, r.parse_receipt(pdu).state) == ("0A", "EXPIRED")
    assert not r.is_receipt(p.Pdu(p.DATA_SM, 1, 0, {"esm_class": 0x00}))
