"""The bench runner: start an engine for a scenario, drive it, and return the results.

Why here: this is the one place that knows how a scenario becomes a running engine (settings from
``bench.engine_config``, a funded account with the bench's sender ID) and which path the traffic takes
(``embedded``: ``Engine.submit_future`` in-process; ``http``: the customer API over loopback, see
``bench.http_path``). The modes — one open-loop run, a saturation search, a soak, a linearity check — are
in ``bench.modes`` and all drive a :class:`Bench` step by step.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bench.drive import StepResult, Target, messages_in_step, run_step
from bench.engine_config import engine_overrides
from bench.recorder import Recorder
from bench.scenario import Corridor, Scenario
from bench.traffic import NUMBERS_PER_COUNTRY, SENDER, Planned, Workload

BENCH_EMAIL = "bench@example.com"
BENCH_DEPOSIT_USD = "100000000"


class EmbeddedTarget:
    """Submits through ``engine.submit_future`` on the calling thread (the embedding API), round robin
    over the bench's accounts."""

    def __init__(self, engine: Any, api_keys: list[str] | str) -> None:
        self._submit = engine.submit_future
        keys = [api_keys] if isinstance(api_keys, str) else list(api_keys)
        self._keys = itertools.cycle(keys).__next__

    def submit(
        self, recorder: Recorder, planned: Planned, pop: str, country: str, intended: float
    ) -> None:
        try:
            fut = self._submit(self._keys(), to=planned.to, sender=SENDER, body=planned.body)
        except Exception as exc:  # a synchronous refusal (overloaded, invalid input) is a result
            recorder.submit_failed(pop, country, intended, _code(exc))
            return
        fut.add_done_callback(partial(_on_done, recorder, pop, country, intended))


def _on_done(recorder: Recorder, pop: str, country: str, intended: float, fut: Any) -> None:
    exc = fut.exception()
    if exc is not None:
        recorder.submit_failed(pop, country, intended, _code(exc))
    else:
        accepted = fut.result()
        recorder.accepted(accepted.message_id, getattr(accepted, "pop", pop), country, intended)


def _code(exc: BaseException) -> str:
    return getattr(exc, "code", None) or type(exc).__name__


@dataclass
class RunOptions:
    """How to run a scenario, beyond the scenario itself (mostly from the command line)."""

    smsc: tuple[str, int] | None = None  # carriers are SMPP binds to this SMSC instead of simulated
    smsc_profile: str | None = None  # run the simulated SMSC in-process with this profile, then check
    smsc_system_id: str = "smsroute"
    smsc_password: str = "secret"
    smsc_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"window": 100, "binds": 2}
    data_dir: str | None = None  # default: a temporary directory, removed afterwards
    engine_process: bool = True  # http path: run the engine in a child process (its own GIL)
    on_tick: Callable[[Recorder, float], None] | None = None
    distinct_numbers: bool = True  # every message to a new number (False: a pool per country)
    workers: int = 0  # >0: a cluster of that many worker processes joined by NATS (engine.cluster)
    accounts: int = 1  # customer accounts the traffic is spread over (round robin)
    profile_stages: bool = False  # CPU per message by stage (embedded path): bench.stages
    webhook_batch: int = 1  # http path: events per webhook POST (1: one per POST, the default)
    extra: dict[str, Any] = field(default_factory=dict)


class Bench:
    """A started engine with a funded bench account, ready to run steps of one scenario.

    Use as a context manager; the engine and its temporary data directory are removed on exit.
    """

    def __init__(self, scenario: Scenario, options: RunOptions | None = None) -> None:
        self.scenario = scenario
        self.options = options or RunOptions()
        self.workload = Workload(scenario, distinct_numbers=self.options.distinct_numbers)
        self.engine: Any = None
        self.api_key = ""
        self._recorder: Recorder | None = None
        self._tmp: str | None = None
        self._target: Target | None = None
        self._http: Any = None
        self._process: Any = None  # bench.engine_process.EngineProcess on the http path
        self._cluster: Any = None  # engine.cluster.local.LocalCluster with --workers
        self.smsc: Any = None  # bench.smsc.SmscThread when the bench runs the SMSC itself
        self.notes: dict[str, Any] = {  # facts about this run worth keeping in the result
            "numbers": "distinct per message" if self.options.distinct_numbers
            else f"a pool of {NUMBERS_PER_COUNTRY} per country (reused)",
        }

    # --- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> Bench:
        from engine import Engine  # late: the bench's pure parts import without the engine
        from engine.config import load_settings

        data_dir = self.options.data_dir or tempfile.mkdtemp(prefix="smsroute-bench-")
        self._tmp = None if self.options.data_dir else data_dir
        http = self.scenario.path == "http"
        if self.options.smsc_profile:
            self._start_smsc(self.options.smsc_profile)
        overrides = engine_overrides(
            self.scenario,
            max_in_flight=max(20_000, self.scenario.load.max_in_flight),
            http_ports=(0, 0) if http else None,
            smpp_carrier=self._smpp_carrier() if self.options.smsc else None,
        )
        if self.options.workers:
            self._start_cluster(overrides, data_dir, http)
        elif http and self.options.engine_process:
            self._start_engine_process(overrides, data_dir)
        else:
            settings = load_settings(None, overrides)
            self.engine = Engine.start(data_dir=data_dir, config=None, http=http, settings=settings)
        try:
            if self._process is None:
                self._open_account()
                self.engine.on_status(self._on_status)
                self.engine.on_carrier_ack(self._on_carrier_ack)
            self._target = self._make_target(http)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._http is not None:
            self.notes["webhook_bad_signatures"] = self._http.bad_signatures
            self._http.close()
            self._http = None
        if self.engine is not None:
            self.engine.stop()
            self.engine = None
            self._process = None
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None
        if self.smsc is not None:
            self.smsc.stop()
            self.smsc = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _start_cluster(self, overrides: dict[str, Any], data_dir: str, http: bool) -> None:
        """The core (accounts, ledger, the bench's own ingress) in this process; the sessions and POPs
        in ``workers`` worker processes, joined by a local NATS server (``engine.cluster.local``)."""
        from engine import Engine
        from engine.cluster.local import LocalCluster
        from engine.config import load_settings

        n = self.options.workers
        self._cluster = LocalCluster(Path(data_dir), n, overrides=overrides)
        placement = self._cluster.core_placement()
        try:
            self.engine = Engine.start(data_dir=Path(data_dir) / "core",
                                       settings=load_settings(None, overrides),
                                       placement=placement, http=http)
            self._cluster.start_workers()
        except BaseException:
            self._cluster.stop()
            self._cluster = None
            raise
        self.notes["cluster"] = (f"{n} worker process(es) + this process (core: accounts, ledger, "
                                 "ingress) + nats-server; cpu_s and peak_rss_mb cover all of them")

    def _start_smsc(self, profile: str) -> None:
        from dataclasses import replace

        from bench.smsc import SmscConfig, SmscThread

        # one SMSC account per carrier, as with real carriers: receipts go to the binds of the
        # account that submitted the message
        accounts = {self._system_id(c): self.options.smsc_password for c in self.scenario.corridors}
        config = SmscConfig.profile(profile, system_id=self.options.smsc_system_id,
                                    password=self.options.smsc_password, accounts=accounts)
        self.smsc = SmscThread(config).start()
        self.options = replace(self.options, smsc=("127.0.0.1", self.smsc.port))
        self.notes["smsc_profile"] = profile

    def check_smsc(self, settle_s: float = 60.0) -> dict[str, Any]:
        """Nothing lost, and no status contradicting what the in-process SMSC did
        (``bench.smsc_check``); embedded path only (the records are read in this process)."""
        from bench.smsc_check import check, wait_until_settled

        if self.smsc is None or self._process is not None:
            return {"verdict": "not checked", "why": "needs --smsc <profile> on the embedded path"}
        wait_until_settled(self.engine, settle_s)
        records = [r for store in self.engine.runtime.pop_stores.values()
                   for r in store.records.for_account(self.account_id)]
        return self.smsc.call(check, records, self.smsc.smsc)

    def _start_engine_process(self, overrides: dict[str, Any], data_dir: str) -> None:
        from bench.engine_process import EngineProcess

        account = {"email": BENCH_EMAIL, "sender": SENDER, "usd": BENCH_DEPOSIT_USD}
        self._process = self.engine = EngineProcess(overrides, data_dir, account).start()
        info = self._process.info
        self.account_id, self.api_key = info["account_id"], info["api_key"]
        self.webhook_secret = info["webhook_secret"]
        self._process.on_carrier_ack(self._on_forwarded_ack)
        self.notes["engine_process"] = (
            "the engine ran in its own process; cpu_s and peak_rss_mb are that process's"
        )

    def _open_account(self) -> None:
        """The bench's accounts; in a cluster, as many on each worker (account ids are random and
        decide the worker, so accounts are opened until each worker has its share, like a large
        customer base spread evenly)."""
        self.api_keys = []
        wanted = max(1, self.options.accounts)
        placement = self.engine.runtime.placement
        share = {w: -(-wanted // len(placement.workers)) for w in placement.workers}
        i = 0
        while len(self.api_keys) < wanted:
            email = BENCH_EMAIL if i == 0 else f"bench{i}@example.com"
            i += 1
            acc = self.engine.create_account(email=email)
            if placement.workers:
                owner = placement.worker_of(acc.id)
                if not share[owner]:
                    continue  # this worker has its share already
                share[owner] -= 1
            self.engine.register_sender(acc.id, SENDER)
            self.engine.deposit(acc.id, usd=BENCH_DEPOSIT_USD, chain="bench", tx_hash=f"0xbench{i}",
                                from_address="bench")
            self.api_keys.append(acc.api_key)
            if len(self.api_keys) == 1:
                self.account_id, self.api_key = acc.id, acc.api_key
                self.webhook_secret = acc.webhook_secret

    def _make_target(self, http: bool) -> Target:
        if not http:
            return EmbeddedTarget(self.engine, self.api_keys)
        from bench.http_path import HttpTarget  # late: needs aiohttp client and the HTTP API

        self.notes["rate_limit"] = "per-account API rate limit raised for the bench account"
        self._http = HttpTarget(self.engine, self.api_key, self.account_id, self.webhook_secret,
                                webhook_batch=self.options.webhook_batch)
        self._http.start()
        return self._http

    def _smpp_carrier(self) -> Callable[[Corridor], dict[str, Any]]:
        from engine.smpp import smsc_carrier_settings

        host, port = self.options.smsc or ("127.0.0.1", 2775)
        o = self.options

        def carrier(corridor: Corridor) -> dict[str, Any]:
            table = smsc_carrier_settings(host, port, self._system_id(corridor), o.smsc_password)
            return {**table, "kind": "smpp", **o.smsc_overrides}

        return carrier

    def _system_id(self, corridor: Corridor) -> str:
        """The SMSC account of a corridor's carrier: its own with an in-process SMSC, else the one."""
        if not self.options.smsc_profile:
            return self.options.smsc_system_id
        from bench.engine_config import carrier_name

        return carrier_name(corridor)[:15]  # SMPP system_id: at most 15 characters

    # --- callbacks (engine threads) --------------------------------------------------------------------

    def _bind(self, recorder: Recorder | None) -> None:
        self._recorder = recorder
        if self._http is not None:
            self._http.bind(recorder)

    def _on_status(self, item: Any) -> None:
        r = self._recorder
        if r is not None and self._http is None:  # on the http path finals come by webhook
            r.on_status_item(item)

    def _on_carrier_ack(self, message_id: str, at: float) -> None:
        r = self._recorder
        if r is not None:
            r.carrier_ack(message_id, at)

    def _on_forwarded_ack(self, message_id: str, perf_at: float) -> None:
        r = self._recorder
        if r is not None:
            r.carrier_ack_at(message_id, perf_at)

    # --- steps -----------------------------------------------------------------------------------------

    def step(
        self,
        *,
        rate: float | None,
        duration_s: float,
        warmup_s: float | None = None,
        messages: int | None = None,
    ) -> StepResult:
        """Run one open-loop step (``rate=None``: as fast as the in-flight cap allows)."""
        load = self.scenario.load
        warmup = load.warmup_s if warmup_s is None else warmup_s
        # numbers are validated before the step (and before a stage profile starts): not engine work
        self.workload.reserve(messages_in_step(rate, duration_s, warmup, messages))
        profiler = self._stage_profiler()
        if profiler is not None:
            profiler.start()
        result = run_step(
            self._target,
            self.workload,
            rate=rate,
            duration_s=duration_s,
            warmup_s=warmup,
            arrival=load.arrival,
            max_in_flight=load.max_in_flight,
            drain_timeout_s=load.drain_timeout_s,
            bind=self._bind,
            messages=messages,
            on_tick=self.options.on_tick,
            **self._cost_meters(),
        )
        if profiler is not None:
            result.extra["stages"] = profiler.stop(result.all_sent).to_json()
        return result

    def _stage_profiler(self) -> Any:
        if not self.options.profile_stages:
            return None
        if self._process is not None:
            self.notes["profile_stages"] = "not available when the engine runs in a child process"
            return None
        from bench.stages import StageProfiler

        runtime = self.engine.runtime

        def commit_counts() -> tuple[int, int]:
            pops = sum(p.get("commits", 0) for p in runtime.shards.pop_stats())
            return pops, runtime.ledger_store.writes

        return StageProfiler(runtime.shards if self._cluster is not None else None, commit_counts)

    def memory_mb(self) -> dict[str, float]:
        """The engine's resident memory now (``rss``, ``anon``, ``file``, ``shmem`` in MB)."""
        from bench.drive import rss_breakdown_mb

        return rss_breakdown_mb(self._process.pid if self._process is not None else "self")

    def _cost_meters(self) -> dict[str, Any]:
        if self._cluster is not None:
            from bench.cluster_cost import ClusterCost

            cost = ClusterCost(self._cluster)
            return {"cpu_clock": cost.cpu_seconds, "rss_peak": cost.peak_rss_mb}
        if self._process is None:
            return {}
        return {
            "cpu_clock": self._process.cpu_seconds,
            "rss_peak": self._process.peak_rss_mb,
            "settle": self._process.flush_acks,
        }
