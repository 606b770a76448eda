"""Runtime: opens the stores, starts the actors in order, and stops them in an order that loses nothing.

Start order: key ring and LMDB environments -> holds -> clock -> ledger -> POPs (each resumes its open
messages, and sends the ledger again every debit and refund it still owes: ``storage.owed_debits``) ->
carriers -> sweeper -> periodic ticks (then the engine opens the mail and privacy stores and only then adds
the closed accounts' sweep to the sweeper, :meth:`Runtime.account_sweep`; its billing service reconciles
records and ledger in the background: ``engine.billing``). Stopping sends the
sessions' last batches to live POPs, stops the carriers, lets the POPs write their last group commit (a
POP never fails on a stopped carrier: what it could not send is durable and resumes), then the ledger
writes its last debits, and the environments close (stop order: clock, sweeper, sessions, carriers,
POPs, ledger).

Data layout under ``data_dir``::

    smsroute.lock    held (flock) by the one engine using this directory (storage.datadir)
    keys/            master key (0600), the key store and accounts/ (one file of wrapped keys per account):
                     data keys live outside every LMDB file ([keys] dir may put this folder elsewhere)
    routing.json     the routing table last replaced on the control port (survives restarts)
    topology.json    a cluster's core: the worker counts it ran with (engine.cluster.topology)
    core/            LMDB: accounts, API key digests, ledger, balances
    pops/<name>/     LMDB per POP: message records, encrypted bodies, TTL index
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import lmdb

from actors.carrier_sim import SimulatedCarrierActor
from actors.clock import Clock
from actors.cluster_link import ClusterLink
from actors.directory import Directory
from actors.group_commit import CommitterActor, GroupCommit, PrefixedEnv, open_shared_pops
from actors.ledger import LedgerActor
from actors.pop import PopActor
from actors.routing_keeper import RoutingKeeper
from actors.session import CustomerSessionActor
from actors.stats_questions import ACTOR_STATS_TIMEOUT_S, ask_stats, ask_stats_later, stats_answers
from actors.sweep_watch import SweepWatch
from actors.sweeper import SweeperActor
from engine import messages as m
from engine.cluster.cluster_shards import ClusterShards
from engine.cluster.late_probe import LateProbe
from engine.cluster.pending_watch import PendingWatch
from engine.cluster.placement import Placement
from engine.cluster.presence import PresenceAnnouncer, PresenceBoard
from engine.cluster.shards import LocalShards
from engine.cluster.topology import TopologyHistory
from engine.cluster.topology import record as record_topology
from engine.cluster.transport import Transport
from engine.config import Settings
from engine.errors import (
    KeyUnavailable,
    UnknownAccount,
)
from engine.loop_pulse import LoopPulse
from engine.routing import RoutingTable
from engine.webhook_events import as_prefs, prefs_of
from storage.account_keys import AccountKeys
from storage.accounts import AccountStore
from storage.apikeys import ApiKeyStore
from storage.audit import AuditLog
from storage.bodies import BodyStore, body_max_ttl
from storage.datadir import DataDirLock, KeysDirLock, check_topology, startup_error
from storage.env import open_env
from storage.holds import Holds
from storage.key_store_record import check_key_store
from storage.keys import KeyRing, open_key_provider
from storage.ledger import LedgerStore
from storage.owed_debits import OwedDebits
from storage.pseudonyms import Pseudonyms
from storage.records import MessageRecords
from storage.refunds import OwedRefunds
from storage.webhook_outbox import WebhookOutbox

log = logging.getLogger(__name__)


@dataclass
class PopStore:
    env: lmdb.Environment
    records: MessageRecords
    bodies: BodyStore
    refunds: OwedRefunds
    debits: OwedDebits
    webhooks: WebhookOutbox


class Runtime:
    def __init__(self, data_dir: Path, settings: Settings, bridge, ids,
                 placement: Placement | None = None) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.bridge = bridge
        self.ids = ids
        self.placement = placement or Placement()
        self.transport: Transport | None = None
        self.presence: PresenceBoard | None = None  # the core: what its workers announce (cluster_link)
        self.announcer: PresenceAnnouncer | None = None  # a worker: what it announces (cluster_link)
        self.late_probe: LateProbe | None = None  # the core: is anybody there for a late worker
        self.pending_watch: PendingWatch | None = None  # the core: fails what waits for a gone worker
        self.group_commit: GroupCommit | None = None  # when the POPs share one environment
        self._committer = None
        self.directory = Directory(settings.routing, self.placement)
        self.directory.bridge = bridge
        self.pop_stores: dict[str, PopStore] = {}
        self._lock = threading.Lock()
        self._stopping = False  # stop() began: parts stop on purpose (dead_parts)
        self.link = ClusterLink(self)  # in a cluster: the NATS connection, and frames to local actors
        self._carrier_actors: dict[str, object] = {}
        # the parts on threads of their own that the actors' probes do not reach: each SMPP carrier's
        # event loop and the sweeper (hung_parts)
        self._carrier_pulses: dict[str, LoopPulse] = {}
        self.clock: Clock | None = None
        self.sweeper = None
        self.sweep_watch: SweepWatch | None = None
        self.core_env: lmdb.Environment | None = None
        self.audits: dict[str, AuditLog] = {}
        self.holds: dict[str, Holds] = {}
        self.shards: LocalShards | ClusterShards = LocalShards(self)
        # a cluster's core: the worker counts it ran with (engine.cluster.topology), read at open
        self.topology = TopologyHistory()
        self.lock = DataDirLock(data_dir)  # one engine per data directory
        self.keys_lock: KeysDirLock | None = None  # and one process per key directory (_lock_keys_dir)
        self.routing = RoutingKeeper(data_dir, settings, self.directory)  # and, in a cluster, its sync

    # --- start -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Lock the data directory, open every store and start the actors. On any failure whatever
        started is stopped again and the lock released, so a failed start leaves no thread behind;
        a failure of the directory itself is one typed error (``storage.datadir.startup_error``)."""
        self._guarded(self._open_and_start)

    def open_stores(self) -> None:
        """Lock the data directory and open its stores without starting any actor (the ``smsroute
        ledger`` commands read a stopped engine's data this way); ``stop`` and ``release`` close them."""
        self._guarded(self._open_stores)

    def _guarded(self, opening) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.lock.acquire()
            opening()
        except BaseException as exc:
            self.stop()
            self.release()
            error = startup_error(exc, self.data_dir) if isinstance(exc, Exception) else None
            if error is None or error is exc:
                raise
            raise error from exc

    def _open_and_start(self) -> None:
        self._open_stores()
        self._start_actors()

    def _open_stores(self) -> None:
        s, place = self.settings, self.placement
        check_topology(self.data_dir, place)
        map_size = s.engine.map_size_mb << 20
        keys_dir = self.keys_dir()
        self._lock_keys_dir(keys_dir)
        self.key_provider = provider = open_key_provider(s.keys, keys_dir)
        self.keys = KeyRing(keys_dir, provider)
        self.pseudonyms = Pseudonyms(self.keys.secret("pseudonym"))
        self.account_keys = AccountKeys(keys_dir / "accounts", provider, self.pseudonyms,
                                        cache_size=s.keys.account_key_cache)
        if place.runs_core:
            if place.clustered and not place.runs_pops:  # before any account is routed by the count
                self.topology = record_topology(self.data_dir, len(place.workers),
                                                fresh=not (self.data_dir / "core").exists(),
                                                accept_fewer=place.accept_fewer_workers)
            self._open_core(map_size, keys_dir)
        if place.runs_pops:
            self._open_pops(map_size, keys_dir)

    def _lock_keys_dir(self, keys_dir: Path) -> None:
        """Hold the key directory for this process's life: a ``[keys] dir`` outside the data directory
        is not covered by the data directory's lock, and a second engine or worker given the same one
        would rewrite the key ring whole with the keys it knows, dropping this one's."""
        if keys_dir.resolve() == self.data_dir.resolve():
            return  # ([keys] dir = ".") the data directory's lock is this one
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.keys_lock = KeysDirLock(keys_dir)
        self.keys_lock.acquire()

    def _start_actors(self) -> None:
        s, place = self.settings, self.placement
        sweepables: dict = {}
        if place.runs_core:  # not the accounts: the engine adds that sweep (account_sweep)
            sweepables.update({"api_keys": self.api_keys, "ledger": self.ledger_store,
                               "audit:core": self.core_audit})
        self.routing.load_saved()
        self.clock = Clock()
        if place.clustered:
            self.link.start()
        if place.runs_core:
            self.directory.ledger = LedgerActor.start(self.ledger_store, self.directory, self.accounts,
                                                      self.clock)
        group = self.group_commit
        if group is not None:
            group.committer = self._committer = CommitterActor.start(group)
        for name, store in self.pop_stores.items():
            self.directory.pops[name] = PopActor.start(name, s, self.directory, store, self.clock,
                                                       self.directory.bridge,
                                                       address=place.pop_address(name),
                                                       webhook_prefs=self.webhook_prefs,
                                                       group=group,
                                                       workers=max(1, len(place.workers)))
        if place.runs_pops:
            for name, carrier in s.carriers.items():
                self.directory.carriers[name] = self._start_carrier(carrier)
        for name, store in self.pop_stores.items():
            sweepables[f"records:{name}"] = store.records
            sweepables[f"holds:{name}"] = self.holds[name]
            sweepables[f"audit:{name}"] = self.audits[name]
            sweepables[f"webhook_outbox:{name}"] = store.webhooks
        self.sweep_watch = SweepWatch(s.engine.sweep_interval_seconds, s.engine.sweep_stall_seconds)
        self.sweeper = SweeperActor.start(
            {name: store.bodies for name, store in self.pop_stores.items()},
            sweepables=sweepables, interval_seconds=s.engine.sweep_interval_seconds,
            watch=self.sweep_watch)
        tick = s.engine.tick_ms / 1000.0
        local = [*self.directory.pops.values(), self.sweeper]
        if place.runs_core:
            local.append(self.directory.ledger)
        for ref in local:
            self.clock.every(tick, ref, lambda: m.encode(m.Tick(time.time())))

    def account_sweep(self) -> dict:
        """The sweep of closed accounts' records (90 days after closure), for the engine to add to the
        sweeper once every store that seals account ids under their data keys is open and has upgraded
        its older records (``engine.privacy``: the data-subject requests get a copy under the ledger
        key): the sweep shreds those keys, and a record it overtook would lose its account's id. Not
        started with the actors, whose first tick sweeps before the engine opens those stores."""
        return {"accounts": self.accounts} if self.placement.runs_core else {}

    def _open_core(self, map_size: int, keys_dir: Path) -> None:
        """The core's stores: accounts, API keys, the ledger, the core audit trail."""
        # accounts and deposits sync explicitly; debits are synced by the ledger actor (storage.ledger)
        self.core_env = open_env(self.data_dir / "core", map_size=map_size, sync=False)
        check_key_store(self.core_env, self.keys, keys_dir, "ledger")
        self.ledger_store = LedgerStore(self.core_env, self.keys.store_sealer("ledger"),
                                        self.account_keys)
        self.accounts = AccountStore(self.core_env, self.account_keys,
                                     on_deleted=self.ledger_store.account_token_deleted)
        self.api_keys = ApiKeyStore(self.core_env, self.account_keys)
        # data-subject and account actions: accounts named by pseudonym, their ids sealed (storage.audit)
        self.core_audit = AuditLog(self.core_env, accounts=self.account_keys)

    def _open_pops(self, map_size: int, keys_dir: Path) -> None:
        """This process's POP shards: one LMDB environment each, with its holds and audit trail."""
        s = self.settings
        (self.data_dir / "pops").mkdir(exist_ok=True, mode=0o700)
        # A window key dies at the first sweep after window start + max TTL: leave room for that sweep
        # so no body is readable past body_ttl_seconds (24 h by default); see storage.bodies.
        max_ttl = body_max_ttl(s.engine.body_ttl_seconds, s.engine.sweep_interval_seconds)
        self.group_commit = open_shared_pops(self.data_dir / "pops", list(s.pops), map_size,
                                             bool(getattr(s.engine, "shared_pop_store", True)))
        if self.group_commit is not None:
            check_key_store(self.group_commit.env, self.keys, keys_dir, "holds")
        for name in s.pops:
            env = (PrefixedEnv(self.group_commit.env, name) if self.group_commit is not None
                   else open_env(self.data_dir / "pops" / name, map_size=map_size))
            if self.group_commit is None:
                try:
                    check_key_store(env, self.keys, keys_dir, "holds")
                except BaseException:
                    env.close()  # not yet among the stores stop() closes
                    raise
            self.pop_stores[name] = PopStore(
                env, MessageRecords(env, self.account_keys),
                BodyStore(env, self.keys, max_ttl_seconds=max_ttl), OwedRefunds(env), OwedDebits(env),
                WebhookOutbox(env, self.account_keys))
        # A hold and its audit entry are written in one transaction, so each POP environment keeps the
        # audit trail of its own holds; ``audit_entries`` reads them all.
        self.audits = {name: AuditLog(store.env, accounts=self.account_keys)
                       for name, store in self.pop_stores.items()}
        self.holds = {name: Holds(store.bodies, self.keys, self.audits[name],
                                  accounts=self.account_keys)
                      for name, store in self.pop_stores.items()}

    def _start_carrier(self, carrier):
        pop_ref = self.directory.pops[carrier.pop]
        if carrier.kind == "smpp":
            from actors.carrier_smpp import SmppCarrierActor

            pulse = self._carrier_pulses[carrier.name] = LoopPulse(
                self.settings.engine.child_hung_after_seconds)
            ref = SmppCarrierActor.start(carrier.name, carrier.options, pop_ref, self.clock,
                                         pulse=pulse)
        else:
            ref = SimulatedCarrierActor.start(carrier.name, carrier.options, pop_ref, self.clock)
        self._carrier_actors[carrier.name] = ref
        return ref

    def sync_ledger(self, timeout: float = 10.0) -> None:
        """Wait until every debit already sent to the ledger is committed (not for the hot path)."""
        self.directory.ledger.ask(m.encode(m.Flush()), timeout=timeout)

    def audit_entries(self) -> list:
        """Every audit entry of the engine (retention exceptions, data-subject actions), oldest first;
        the sealed notes of hold entries opened while their notes key lives ("shredded" after)."""
        entries = list(self.core_audit.entries())
        for name, audit in self.audits.items():
            opener = self.holds[name].open_notes
            entries.extend(e._replace(detail=opener(e.detail)) for e in audit.entries())
        return sorted(entries, key=lambda e: e.ts)

    def keys_dir(self) -> Path:
        """Where the keys live: ``[keys] dir`` (relative to the data directory), or ``<data_dir>/keys``."""
        configured = self.settings.keys.dir
        return self.data_dir / (configured or "keys")

    def local_secret(self, name: str) -> bytes:
        """A persistent 32-byte secret for keyed hashes, kept in the key ring (wrapped by the KEK)."""
        return self.keys.secret(name)

    # --- sessions ----------------------------------------------------------------------------------

    def session_for(self, account_id: str):
        """The ref to tell an account's submits: its session here (started on first use), or on the
        worker whose partition holds the account."""
        if not self.placement.runs_pops:
            if not self.directory.knows_session(account_id):
                self.accounts.get(account_id)  # UnknownAccount before anything is sent for it
            return self.directory.session_ref(account_id)
        ref = self.directory.sessions.get(account_id)
        if ref is not None:
            return ref
        if self.placement.runs_core:
            self.accounts.get(account_id)  # UnknownAccount before an actor is started for it
        return self.start_session(account_id)

    def start_session(self, account_id: str):
        with self._lock:
            ref = self.directory.sessions.get(account_id)
            if ref is None:
                if not self.placement.runs_core:
                    # a worker seals the account's records under a data key of its own (made here, on
                    # the first message; the core's erasure shreds it on every worker). An account the
                    # core no longer knows gets a session that refuses everything, so nothing is sealed.
                    self.account_keys.create(account_id)
                ref = CustomerSessionActor.start(account_id, self.settings, self.directory, self.ids)
                self.directory.sessions[account_id] = ref
        return ref

    def webhook_prefs(self, account_id: str) -> tuple[bool, frozenset[str] | None]:
        """Whether the account has a webhook URL, and the statuses it wants (a POP's question, asked
        once per account and again after ``WebhookSettingsChanged``). A worker of a cluster has no
        accounts store: it keeps every status change for the core's webhook feed, which sends only what
        the account wants (and drops the rest at once)."""
        accounts = getattr(self, "accounts", None)
        if accounts is None:
            return True, None
        try:
            record = accounts.get(account_id)
        except (UnknownAccount, KeyUnavailable):
            return False, None
        return as_prefs(prefs_of(account_id, record))

    def tell_pops(self, msg: m.Message) -> None:
        raw = m.encode(msg)
        for ref in self.directory.pops.values():
            ref.tell(raw)

    def tell_session(self, account_id: str, msg: m.Message) -> None:
        """An account change, to its session if it runs (a session not running starts from a fresh
        snapshot when it does)."""
        ref = self.directory.session_ref(account_id)
        if ref is not None:
            ref.tell(m.encode(msg))

    # --- operators ---------------------------------------------------------------------------------

    def carrier_stats(self) -> list[dict]:
        return self.shards.carrier_stats()

    def local_carrier_stats(self) -> list[dict]:
        """Each carrier's row (``{"carrier", "pop", "error"}`` for one that does not answer in time)."""
        rows = ask_stats(self._carrier_actors, "carrier")
        return [{**rows[name], "pop": self.settings.carriers[name].pop} for name in self._carrier_actors]

    def suspend_carrier(self, name: str, suspended: bool) -> None:
        """Take a carrier out of service or back (on every worker, in a cluster); returns once the
        carrier has taken the change (so ``carrier_stats`` right after shows it)."""
        if name not in self.settings.carriers:
            raise UnknownAccount(f"no carrier {name}")
        self.shards.suspend_carrier(name, suspended)

    def local_suspend_carrier(self, name: str, suspended: bool) -> None:
        ref = self._carrier_actors.get(name)
        if ref is None:
            raise UnknownAccount(f"no carrier {name}")
        ref.ask(m.encode(m.SetCarrierSuspended(suspended)), timeout=10)

    def validate_routing(self, table: dict) -> RoutingTable:
        """The routing table ``table`` describes, validated against the configured POPs and carriers."""
        return self.routing.parse(table)

    def replace_routing(self, table: dict) -> None:
        """Validate, persist (atomically: write, fsync, rename) and swap in a new routing table; a
        cluster's core hands it to every worker (``actors.routing_keeper``)."""
        self.routing.replace(table)

    def local_use_routing(self, table: dict) -> None:
        """A worker takes the table the core replaced (persisted here too, for its restarts)."""
        if not self.placement.runs_core:  # (in one process replace_routing did it)
            self.routing.take_pushed(table)

    def actors_alive(self) -> dict[str, bool]:
        """Whether each long-lived part runs: the clock (every tick, retry and sweep), the ledger, the
        group commit's committer (when the POPs share one store), the sweeper, every POP and carrier. An
        actor that raised out of a handler has stopped (pykka), a thread that raised has ended; this is
        how it becomes visible (``/readyz``, ``smsroute_actor_alive``). A worker's ``ledger`` is the
        core's, alive while the NATS link is usable."""
        return {name: ref is not None and ref.is_alive() for name, ref in self._long_lived().items()}

    def dead_parts(self) -> list[str]:
        """The long-lived parts of this process that are not running (not the core's ledger a worker
        sends to: the link is not a part of it), for a worker's heartbeat, which stops while there is
        one (``engine.cluster.heartbeat.parts_probe``): a restart starts them all again. Empty once the
        runtime stops, when they stop one after the other on purpose."""
        if self._stopping:
            return []
        return [name for name, ref in self._long_lived().items()
                if not getattr(ref, "remote", False) and not (ref is not None and ref.is_alive())]

    def _long_lived(self) -> dict[str, object | None]:
        refs: dict[str, object | None] = {"clock": self.clock, "ledger": self.directory.ledger}
        if self.group_commit is not None:
            refs["committer"] = self._committer
        refs["sweeper"] = getattr(self, "sweeper", None)
        refs.update({f"pop:{n}": r for n, r in self.directory.pops.items()})
        refs.update({f"carrier:{n}": r for n, r in self._carrier_actors.items()})
        return refs

    def hung_parts(self) -> dict[str, str]:
        """The parts that run but stopped working, each with why (``{"sweeper": "no store swept for
        901 s"}``; empty when none): the retention sweeper (``actors.sweep_watch``) and each SMPP
        carrier's event loop (``engine.loop_pulse``), as ``carrier:<name>``. Flag reads only, never a
        question to them (``/readyz`` and the heartbeat must not wait on what may be stuck). A part
        that is not running is not hung: :meth:`actors_alive` says so."""
        hung: dict[str, str] = {}
        if self.sweep_watch is not None and self.sweeper is not None and self.sweeper.is_alive():
            why = self.sweep_watch.hung()
            if why is not None:
                hung["sweeper"] = why
        for name, pulse in list(self._carrier_pulses.items()):
            why = pulse.hung()
            if why is not None:
                hung[f"carrier:{name}"] = why
        return hung

    def dead_sessions(self) -> int:
        """Customer sessions that stopped without being removed (their accounts cannot submit)."""
        return sum(1 for ref in list(self.directory.sessions.values()) if not ref.is_alive())

    def local_stats_view(self, with_carriers: bool) -> dict[str, list[dict]]:
        """``pops`` (and ``carriers``) of this process, all asked at once with one deadline (see
        :func:`ask_stats`): asked one group after the other, a busy dispatcher thread cost each its
        own deadline."""
        deadline = time.monotonic() + ACTOR_STATS_TIMEOUT_S
        pops = ask_stats_later(self.directory.pops)
        carriers = ask_stats_later(self._carrier_actors) if with_carriers else None
        rows = stats_answers(pops, "pop", deadline)
        view = {"pops": [rows[name] for name in self.directory.pops]}
        if carriers is not None:
            rows = stats_answers(carriers, "carrier", deadline)
            view["carriers"] = [{**rows[name], "pop": self.settings.carriers[name].pop}
                                for name in self._carrier_actors]
        return view

    def local_pop_stats(self) -> list[dict]:
        """Each POP's counters; a POP that does not answer in time is a row ``{"pop", "error"}``, never
        left out (an operator must see that a POP is missing, not a shorter list)."""
        rows = ask_stats(self.directory.pops, "pop")
        return [rows[name] for name in self.directory.pops]

    def local_forget_account(self, account_id: str) -> int:
        """Erasure in this process: the session hands over what it holds and stops, each POP ends the
        account's in-flight messages and deletes its records in its own thread, holds forget it; a
        worker also shreds the account's data key it made (the core shreds its own itself)."""
        session = self.directory.sessions.pop(account_id, None)
        if session is not None:
            session.stop(timeout=10)  # processes what it was told, hands its batch to the POPs
        deleted = sum(pop.ask(m.encode(m.ForgetAccount(account_id)), timeout=30)
                      for pop in self.directory.pops.values())
        for holds in self.holds.values():
            holds.forget_account(account_id)
        if not self.placement.runs_core:
            self.account_keys.shred(account_id)
        return deleted

    def stats(self, with_carriers: bool = False) -> dict:
        """Each POP's counters and queues (and ``with_carriers`` each carrier's), the session count and
        the retention sweeper's totals. In a cluster's core the workers are asked with the short stats
        deadline: a worker that does not answer is named (``pops_missing``), the others' rows kept
        (``ClusterShards.stats_view``)."""
        deadline = time.monotonic() + ACTOR_STATS_TIMEOUT_S
        asked = ask_stats_later({"sweeper": self.sweeper} if self.sweeper is not None else {})
        shards = self.shards.stats_view(with_carriers)  # (here: the POPs and carriers, same deadline)
        sweeper: dict = {}
        if asked:  # asked with the POPs, not after them: one busy dispatcher costs one deadline
            view = stats_answers(asked, "sweeper", deadline)["sweeper"]
            sweeper = ({"error": view["error"]} if "error" in view else
                       {**view["totals"], "removed_by_store": view["removed_by_store"]})
        alive, hung = self.actors_alive(), self.hung_parts()
        return {**shards, "sessions": len(self.directory.sessions), "sweeper": sweeper,
                "actors": {name: {"alive": int(ok), "hung": int(name in hung)}
                           for name, ok in alive.items()},
                "dead_actors": sum(1 for ok in alive.values() if not ok),
                "dead_sessions": self.dead_sessions()}

    # --- stop --------------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """True while in-flight messages can still finish: every local POP runs (in the core of a
        cluster, where the POPs are on the workers: while the transport is connected)."""
        if not self.placement.runs_pops:
            return self.transport is not None and self.transport.connected
        pops = list(self.directory.pops.values())
        return bool(pops) and all(ref.is_alive() for ref in pops)

    def stop(self) -> None:
        """Stop in the order that loses nothing (also after a start that failed half way)."""
        self._stopping = True
        self.routing.stop()
        if self.clock is not None:
            self.clock.stop()
        if self.sweeper is not None:
            _stop(self.sweeper)
        # sessions first (their last batches reach live POPs), then carriers, then the POPs' last
        # group commit, then the ledger's last debits
        _stop_all(self.directory.sessions.values())
        _stop_all(self._carrier_actors.values())  # in parallel: each may wait for its SMSC's unbind
        _stop_all(self.directory.pops.values())
        if self.directory.ledger is not None and self.placement.runs_core:
            _stop(self.directory.ledger)
        if self.transport is not None:  # after every actor: their last frames go out first
            self.transport.stop()
        self.shards.close()
        for store in self.pop_stores.values():
            store.env.close()
        if self.group_commit is not None:
            if self._committer is not None:
                _stop(self._committer)  # after the POPs: their last batches were committed on stop
            self.group_commit.env.close()
        if getattr(self, "api_keys", None) is not None:
            self.api_keys.close()
        if self.core_env is not None:
            self.core_env.close()
        close = getattr(getattr(self, "key_provider", None), "close", None)
        if close is not None:  # an HSM session
            close()

    def release(self) -> None:
        """Give up the key and data directories' locks (once every store is closed; idempotent)."""
        if self.keys_lock is not None:
            self.keys_lock.release()
        self.lock.release()


def _stop_all(refs, timeout: float = 15.0) -> None:
    """Stop actors of one tier together (each finishes what is in its inbox) and wait for all."""
    futures = []
    for ref in list(refs):
        try:
            futures.append(ref.stop(block=False))
        except Exception:
            log.warning("stopping %s failed", ref)
    for fut in futures:
        try:
            fut.get(timeout=timeout)
        except Exception:  # stuck or already gone: the process is going down anyway
            log.warning("an actor did not stop in time")


def _stop(ref) -> None:
    try:
        ref.stop(timeout=10)
    except Exception:  # already dead, or stuck: the process is going down anyway
        log.warning("stopping %s failed", ref)
