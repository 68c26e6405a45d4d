"""One client's five years in Silta, written the way the services write them (no database).

Each client's life is a queue of dated API writes — register, name a worker, end an assignment,
move, propose and accept an organising transfer, end aftercare early, change the support level,
propose and confirm work pairs, propose and answer cost decisions, ask other regions — applied in
date order to in-memory rows exactly as the services apply them (``app/services/clients.py``,
``residence.py``, ``assignments.py``, ``workers.py``, ``pairs.py``, ``costs.py``, ``requests.py``),
recording the same changes (``record_change``) in one ``Tx`` per request (pairs and cost decisions:
``dataset_cooperation``, a mixin of ``Life``). The rules are the app's:
gaps come from ``app.domain.compliance.gap_spans`` after every write (``reconcile``'s bookkeeping
mirrored), age limits from ``app.domain.aftercare``, where a client lives from
``app.domain.responsibility.resolve_residence``, who answers a cost decision from
``app.domain.costs.counterparty``. Writes happen only on their own date (nothing back- or
forward-dated except assignments backdated to a registration's start, as an initial import does),
and nothing after yesterday.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Callable, Iterable
from typing import Any

from dataset_cooperation import SERVICE_PAYERS, Cooperation
from dataset_world import SHAPES, ClientPlan, Read, Staff, Tx, World, active

from app.domain import aftercare
from app.domain import compliance as gap_rules
from app.domain.responsibility import ORGANISING, RESIDENCE, Holders, resolve_residence
from app.models.request import AUTOMATIC_KINDS
from app.services.vault import Vault

DAY = dt.timedelta(days=1)
ASSIGN_REQUEST = {ORGANISING: "assign_organising_worker", RESIDENCE: "assign_residence_worker"}
REQUEST_KINDS = (
    "assign_residence_worker", "assign_organising_worker", "accept_organising_transfer", "confirm_pair",
    "review_cost_decision", "other",
)  # fmt: skip
# How soon a region names a worker after a gap opens: (same day, mean days otherwise, never).
NAMING_DELAY = {
    "registered": (0.30, 6.0, 0.004),
    "assignment_ended": (0.80, 4.0, 0.002),
    "worker_deactivated": (0.10, 8.0, 0.005),
    "moved": (0.15, 10.0, 0.005),
    "organising_transferred": (0.50, 5.0, 0.002),
}
MEAN_ASSIGNMENT_DAYS = 900  # then a reassignment
END_REASONS = ("reassigned", "caseload balancing", "worker changed duties", "the young person's wish")
EARLY_END_REASONS = (
    "the young person declined further aftercare", "moved abroad", "aftercare plan completed",
    "transferred to adult social work",
)  # fmt: skip
TRANSFER_REASONS = ("the young person has settled in the residence region", "placement region no longer involved")
OTHER_MESSAGES = ("please share the current client plan", "joint meeting needed", "housing arrangement to agree")
# Reads: GET client (and friends) by the regions holding it; endpoint templates as the access log keeps them.
READS = (
    ("GET", "/v1/clients/{client_id}", 0.45),
    ("GET", "/v1/clients/{client_id}/responsibility", 0.22),
    ("GET", "/v1/clients/{client_id}/compliance", 0.10),
    ("GET", "/v1/clients/{client_id}/assignments", 0.08),
    ("GET", "/v1/clients/{client_id}/history", 0.05),
    ("POST", "/v1/clients/search", 0.10),
)
READ_BACK = 0.25  # a client-information system reads the client back after its write


class Life(Cooperation):
    """One client: its rows as they stand, and the queue of writes still to come."""

    def __init__(self, world: World, staff: Staff, vault: Vault, reads_per_month: float) -> None:
        self.w, self.rng, self.staff, self.vault = world, world.rng, staff, vault
        self.reads_per_month = reads_per_month
        self.queue: list[tuple[dt.date, int, int, Callable[..., None], tuple[Any, ...]]] = []
        self.clock = dt.datetime.min.replace(tzinfo=dt.UTC)
        self.last_write = dt.date.min
        self.row: dict[str, Any] = {}
        self.external: list[dict[str, Any]] = []
        self.periods: list[dict[str, Any]] = []
        self.assignments: list[dict[str, Any]] = []
        self.gaps: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.pairs: list[dict[str, Any]] = []
        self.decisions: list[dict[str, Any]] = []
        self.answers: dict[Any, dict[str, Any]] = {}
        self.hints: dict[tuple[str, str], dict[str, Any]] = {}
        self.initial = False

    # ------------------------------------------------------------------ the queue

    def at(self, on: dt.date, handler: Callable[..., None], *args: Any, first: bool = False) -> None:
        heapq.heappush(self.queue, (on, 0 if first else 1, next(self.w.counter), handler, args))

    def run(self) -> None:
        while self.queue:
            on, _, _, handler, args = heapq.heappop(self.queue)
            if on > self.w.last:
                break
            handler(on, *args)
        self.queue.clear()  # its bound methods point back here: no cycle left for the collector
        self.plan_reads()

    def begin(self, on: dt.date, caller_region: str, role: str = "either") -> Tx:
        caller = self.w.either(caller_region) if role == "either" else self.w.caller(caller_region, role)
        at = self.w.moment(on)
        if at <= self.clock:
            at = self.clock + dt.timedelta(seconds=self.rng.randrange(20, 600), microseconds=self.rng.randrange(10**6))
        self.clock = at
        return self.w.tx(at, caller)

    def commit(self, tx: Tx, on: dt.date, read_back: bool = True) -> None:
        """What the feed's commit hook reads (holders, responsibilities, protection), and maybe a read."""
        self.last_write = max(self.last_write, on)
        running = sorted(
            (p for p in self.periods if p["valid_to"] is None or p["valid_to"] > on), key=lambda p: p["valid_from"]
        )
        holders = frozenset(p["region"] for p in running if p["region"])
        shown = None
        if tx.at >= self.w.feed_from:  # as app.services.feed._holders: in force now, else the first announced
            shown = {}
            for p in running:
                if p["responsibility"] not in shown or p["valid_from"] <= on:
                    shown[p["responsibility"]] = {
                        "region": p["region"],
                        "municipality": p["municipality"],
                        "outside": p["residence_outside"],
                        "valid_from": p["valid_from"].isoformat(),
                    }
        tx.views[self.row["id"]] = (holders, shown, bool(self.row["address_protection"]))
        if read_back and tx.caller.region and self.rng.random() < READ_BACK:
            later = tx.at + dt.timedelta(seconds=self.rng.uniform(0.2, 20))
            self.read(later, self.w.caller(tx.caller.region, "system"), "GET", "/v1/clients/{client_id}")

    def change(
        self, tx: Tx, action: str, table: str, row: dict[str, Any], before: dict[str, Any] | None = None
    ) -> None:
        """``record_change``: the entity's new state, and its state before for updates."""
        tx.changes.append(
            {
                "action": action,
                "entity_type": table,
                "entity_id": row["id"],
                "client_id": self.row["id"],
                "before": before,
                "after": SHAPES[table].snapshot(row),
            }
        )

    # ------------------------------------------------------------------ state

    def period(self, responsibility: str, on: dt.date) -> dict[str, Any] | None:
        """The period in force on ``on`` (or the first one, before aftercare begins): ``state.periods_on``."""
        running = [
            p
            for p in self.periods
            if p["responsibility"] == responsibility and (p["valid_to"] is None or p["valid_to"] > on)
        ]
        return min(running, key=lambda p: p["valid_from"], default=None)

    def open_period(self, responsibility: str) -> dict[str, Any]:
        return next(p for p in self.periods if p["responsibility"] == responsibility and p["valid_to"] is None)

    def holders(self, on: dt.date) -> Holders:
        organising, residence = self.period(ORGANISING, on), self.period(RESIDENCE, on)
        assert organising is not None and organising["region"] is not None
        return Holders(organising=organising["region"], residence=residence["region"] if residence else None)

    def running(self, on: dt.date) -> list[dict[str, Any]]:
        return [a for a in self.assignments if a["valid_to"] is None or a["valid_to"] > on]

    def ended(self, on: dt.date) -> bool:
        return on > self.row["aftercare_end"]

    # ------------------------------------------------------------------ a life

    def live(self, plan: ClientPlan) -> None:
        """Register the client and play its life out: moves, transfers, an early end, pairs, decisions, reads."""
        w, rng = self.w, self.rng
        self.initial = plan.initial
        organising = plan.organising
        chance = rng.random()
        if chance < 0.70:
            lives = organising
        elif chance < 0.97:
            lives = w.region(exclude=organising)
        else:
            lives = None
        municipalities = w.regions[lives].municipalities if lives else w.aland
        if chance >= 0.985:
            residence = self.residence(None, None, "abroad")
        elif municipalities and rng.random() < 0.85:
            residence = self.residence(None, rng.choice(municipalities), None)
        else:
            residence = self.residence(lives, None, None if lives else "aland")
        by = residence["region"] if residence["region"] not in (None, organising) and rng.random() < 0.1 else organising
        self.register(plan, residence, by)
        first, end = max(plan.start, plan.registered) + DAY, self.row["aftercare_end"]
        if end > first:
            years = (end - first).days / 365.25
            for _ in range(int(0.22 * years + rng.random())):
                self.at(w.day(first, end), self.move)
            for chance, handler in ((0.06, self.propose_transfer), (0.10, self.end_early), (0.10, self.change_support)):
                if rng.random() < chance:
                    self.at(w.day(first, end), handler)
            if rng.random() < 0.05:
                self.at(w.day(first, end), self.ask)
            if rng.random() < 0.15:  # only a client of two regions has someone to agree (costs.counterparty)
                self.at(w.day(first, end), self.propose_cost, rng.choice(list(SERVICE_PAYERS)))
        self.run()

    # ------------------------------------------------------------------ registration

    def register(self, plan: ClientPlan, residence: dict[str, Any], by: str) -> None:
        """``register``: the client, both periods, its external id, gaps and the other region's request."""
        on, start, born, organising = plan.registered, plan.start, plan.born, plan.organising
        region = self.w.regions[organising]
        aftercare.check_registrable(born, region.end_age, start, on)
        first, last = self.w.name()
        digest, sealed, key_id = self.vault.seal(plan.identity_code)
        tx = self.begin(on, by, "system")
        levels = self.rng.random()
        self.row = SHAPES["client"].row(
            id=self.w.uuid(),
            personal_id_hash=digest,
            personal_id_cipher=sealed,
            personal_id_key=key_id,
            first_name=first,
            last_name=last,
            birth_date=born,
            support_level="standard" if levels < 0.6 else "enhanced" if levels < 0.88 else "special",
            address_protection=self.rng.random() < 0.02,
            aftercare_start=start,
            aftercare_end=aftercare.aftercare_end(born, region.end_age),
            end_date=None,
            end_reason=None,
            version=1,
            created_at=tx.at,
            updated_at=tx.at,
        )
        self.periods.append(self._period(tx, ORGANISING, organising, None, None, start))
        self.periods.append(
            self._period(tx, RESIDENCE, residence["region"], residence["municipality"], residence["outside"], start)
        )
        system = self.w.regions[by].system_name
        self.external.append(
            SHAPES["client_external_id"].row(
                id=self.w.uuid(),
                client_id=self.row["id"],
                system=system,
                external_id=f"{system[:3].upper()}-{by}-{self.rng.getrandbits(40):012d}",
            )
        )
        self.change(tx, "client.registered", "client", self.row)
        self.reconcile(tx, on, "registered")
        if residence["region"] and residence["region"] != organising:
            other = residence["region"] if by == organising else organising
            kind = ASSIGN_REQUEST[RESIDENCE if other == residence["region"] else ORGANISING]
            self.open_request(tx, on, kind, other)
        self.commit(tx, on)

    def _period(
        self,
        tx: Tx,
        responsibility: str,
        region: str | None,
        municipality: str | None,
        outside: str | None,
        on: dt.date,
    ) -> dict[str, Any]:
        return SHAPES["responsibility_period"].row(
            id=self.w.uuid(),
            client_id=self.row["id"],
            responsibility=responsibility,
            region=region,
            municipality=municipality,
            residence_outside=outside,
            valid_from=on,
            valid_to=None,
            recorded_at=tx.at,
            valid_to_recorded_at=None,
            retracted_at=None,
        )

    def residence(self, region: str | None, municipality: str | None, outside: str | None) -> dict[str, Any]:
        """Where the client lives, as ``resolve_residence`` derives it from what a caller gives."""
        municipality_region = self.w.municipality_region.get(municipality) if municipality else None
        derived = resolve_residence(
            region=region if municipality is None else None,
            municipality=municipality,
            outside=outside if municipality is None else None,
            municipality_region=municipality_region,
            organiser_regions=set(self.w.regions),
        )
        return {"region": derived[0], "municipality": derived[1], "outside": derived[2]}

    # ------------------------------------------------------------------ gaps (rule 4)

    def reconcile(self, tx: Tx, on: dt.date, cause: str) -> None:
        """``services.compliance.reconcile``: gap rows brought in line with ``gap_spans`` of the timeline."""
        row = self.row
        wanted = gap_rules.gap_spans(
            periods=[
                gap_rules.Span(p["responsibility"], p["region"], p["valid_from"], p["valid_to"]) for p in self.periods
            ],
            assignments=[
                gap_rules.Cover(a["id"], a["responsibility"], a["region"], a["valid_from"], a["valid_to"])
                for a in self.assignments
            ],
            start=row["aftercare_start"],
            end=row["aftercare_end"] + DAY if row["end_date"] is not None else None,
        )
        live = {(g["responsibility"], g["region"], g["since"]): g for g in self.gaps if g["closed_on"] != g["since"]}
        for span in wanted:
            gap = live.pop((span.responsibility, span.region, span.since), None)
            if gap is not None and gap["closed_on"] != span.until:
                self._set_end(tx, gap, span.until, span.closed_by, cause)
        for gap in live.values():
            self._set_end(tx, gap, gap["since"], None, cause)
        known = {(g["responsibility"], g["region"], g["since"]) for g in self.gaps if g["closed_on"] != g["since"]}
        for span in wanted:
            if (span.responsibility, span.region, span.since) in known:
                continue
            gap = SHAPES["compliance_gap"].row(
                id=self.w.uuid(),
                client_id=row["id"],
                responsibility=span.responsibility,
                region=span.region,
                since=span.since,
                due=gap_rules.gap_due(span.since, on, self.w.regions[span.region].grace_days),
                cause=cause,
                opened_at=tx.at,
                closed_on=None,
                closed_at=None,
                closed_by_assignment_id=None,
                close_reason=None,
            )
            self._end(gap, span.until, span.closed_by, cause, tx.at)
            self.gaps.append(gap)
            self.change(tx, "gap.opened", "compliance_gap", gap)
            if span.until is None:
                self.plan_naming(on, gap, cause)

    def _set_end(self, tx: Tx, gap: dict[str, Any], until: dt.date | None, closed_by: Any, cause: str) -> None:
        before = SHAPES["compliance_gap"].snapshot(gap)
        self._end(gap, until, closed_by, cause, tx.at)
        self.change(tx, "gap.reopened" if until is None else "gap.closed", "compliance_gap", gap, before)

    @staticmethod
    def _end(gap: dict[str, Any], until: dt.date | None, closed_by: Any, cause: str, at: dt.datetime) -> None:
        gap["closed_on"] = until
        gap["closed_at"] = at if until is not None else None
        gap["closed_by_assignment_id"] = closed_by
        gap["close_reason"] = None if until is None else ("assigned" if closed_by else cause)

    def plan_naming(self, on: dt.date, gap: dict[str, Any], cause: str) -> None:
        """The region names a worker for an open gap: the same day, some days later, or (rarely) never.

        At go-live the regions import the clients already in aftercare together with their named
        workers: the same day, half of them with the date the worker really took over.
        """
        if self.initial and cause == "registered" and self.rng.random() < 0.85:
            self.at(on, self.name_worker, gap, self.rng.random() < 0.5)
            return
        same_day, mean, never = NAMING_DELAY.get(cause, (0.3, 7.0, 0.02))
        chance = self.rng.random()
        if chance < never:
            return
        delay = 0 if chance < never + same_day else 1 + int(self.rng.expovariate(1 / mean))
        self.at(max(on, gap["since"] - dt.timedelta(days=30)) + dt.timedelta(days=delay), self.name_worker, gap)

    # ------------------------------------------------------------------ assignments

    def name_worker(self, on: dt.date, gap: dict[str, Any], backdate: bool = False) -> None:
        """``create_assignment`` for a gap still open: a worker of the region holding it."""
        if self.ended(on) or gap["closed_on"] is not None:
            return
        responsibility, region = gap["responsibility"], gap["region"]
        purpose = "social" if responsibility == ORGANISING and self.row["support_level"] == "special" else "named"
        worker = self.hints.pop((responsibility, region), None)
        if worker is None or not active(worker, on) or (purpose == "social" and worker["role"] != "social_worker"):
            worker = self.staff.pick(region, purpose, on)
        if worker is None:
            return
        start = gap["since"] if backdate else max(on, gap["since"])
        tx = self.begin(on, region)
        assignment = SHAPES["assignment"].row(
            id=self.w.uuid(),
            client_id=self.row["id"],
            responsibility=responsibility,
            region=region,
            worker_id=worker["id"],
            valid_from=start,
            valid_to=None,
            end_reason=None,
            recorded_at=tx.at,
            valid_to_recorded_at=None,
            retracted_at=None,
        )
        self.assignments.append(assignment)
        self.change(tx, "assignment.created", "assignment", assignment)
        self.settle_open(
            tx,
            [ASSIGN_REQUEST[responsibility]],
            "accepted",
            "fulfilled by the assignment",
            to_region=region,
            assignment_id=assignment["id"],
        )
        self.reconcile(tx, on, "assigned")
        self.commit(tx, on)
        self._plan_end(on, assignment, worker)
        self._plan_pairs(on, assignment)

    def _plan_end(self, on: dt.date, assignment: dict[str, Any], worker: dict[str, Any]) -> None:
        """A reassignment some day; and if the worker leaves, the deactivation ends whatever still runs
        then — also the assignments of clients whose aftercare has run out, as ``_end_assignments_of`` does."""
        days = max(30, int(self.rng.expovariate(1 / MEAN_ASSIGNMENT_DAYS)))
        planned = max(assignment["valid_from"] + dt.timedelta(days=days), on + DAY)
        leaves = worker["inactive_from"]
        if leaves is None or planned < leaves:
            self.at(planned, self.end_assignment, assignment)
        if leaves is not None:
            self.at(leaves, self.worker_deactivated, worker, first=True)

    def end_assignment(self, on: dt.date, assignment: dict[str, Any]) -> None:
        """``end_assignment`` by its region (a reassignment follows through the gap it opens)."""
        if self.ended(on) or assignment["valid_to"] is not None or on < assignment["valid_from"]:
            return
        tx = self.begin(on, assignment["region"])
        self.close_assignment(tx, assignment, on, self.rng.choice(END_REASONS))
        self.reconcile(tx, on, "assignment_ended")
        self.commit(tx, on)

    def close_assignment(self, tx: Tx, assignment: dict[str, Any], end: dt.date, reason: str) -> None:
        """``close_assignment``: the assignment ends on ``end`` (never before it began), with its pairs."""
        before = SHAPES["assignment"].snapshot(assignment)
        assignment.update(valid_to=max(end, assignment["valid_from"]), valid_to_recorded_at=tx.at, end_reason=reason)
        self.change(tx, "assignment.ended", "assignment", assignment, before)
        self.end_pairs_of(tx, assignment["valid_to"], f"assignment ended: {reason}", assignment_id=assignment["id"])

    def worker_deactivated(self, on: dt.date, worker: dict[str, Any]) -> None:
        """This client's part of the worker's deactivation (``workers._end_assignments_of``): one shared write."""
        running = [a for a in self.running(on) if a["worker_id"] == worker["id"]]
        paired = [p for p in self.pairs if worker["id"] in (p["worker_1_id"], p["worker_2_id"]) and self._live(p, on)]
        if not running and not paired:
            return
        tx = self.w.shared[worker["id"]]
        self.clock = max(self.clock, tx.at)
        for assignment in sorted(running, key=lambda a: a["valid_from"]):
            self.close_assignment(tx, assignment, on, "worker_deactivated")
        self.end_pairs_of(tx, on, "worker deactivated", worker_id=worker["id"])
        if running:
            organising = self.holders(on).organising
            if any(a["responsibility"] == RESIDENCE for a in running):
                self.open_request(
                    tx,
                    on,
                    ASSIGN_REQUEST[RESIDENCE],
                    worker["region"],
                    from_region=organising,
                    message="the named residence worker was deactivated",
                )
            self.reconcile(tx, on, "worker_deactivated")
        self.commit(tx, on, read_back=False)

    # ------------------------------------------------------------------ requests

    def open_request(
        self,
        tx: Tx,
        on: dt.date,
        kind: str,
        to_region: str,
        *,
        from_region: str | None = None,
        message: str = "",
        details: dict[str, Any] | None = None,
        pair_id: Any = None,
        cost_decision_id: Any = None,
    ) -> dict[str, Any]:
        """``open_request``: the rules' own kinds are opened once per client, kind and receiver."""
        if kind in AUTOMATIC_KINDS:
            for request in self.requests:
                if (request["kind"], request["to_region"], request["status"]) == (kind, to_region, "open"):
                    return request
        request = SHAPES["coordination_request"].row(
            id=self.w.uuid(),
            client_id=self.row["id"],
            kind=kind,
            from_region=from_region or tx.caller.region or to_region,
            to_region=to_region,
            status="open",
            due_date=on + dt.timedelta(days=self.w.regions[to_region].grace_days),
            message=message,
            details=details or {},
            created_by=tx.caller.subject,
            created_at=tx.at,
            version=1,
            answered_at=None,
            answered_by=None,
            answered_by_region=None,
            answer_note=None,
            assignment_id=None,
            pair_id=pair_id,
            cost_decision_id=cost_decision_id,
        )
        self.requests.append(request)
        self.change(tx, "request.created", "coordination_request", request)
        return request

    def settle(self, tx: Tx, request: dict[str, Any], status: str, note: str, assignment_id: Any = None) -> None:
        before = SHAPES["coordination_request"].snapshot(request)
        request.update(
            status=status,
            answered_at=tx.at,
            answered_by=tx.caller.subject,
            answered_by_region=tx.caller.region,
            answer_note=note,
            assignment_id=assignment_id or request["assignment_id"],
            version=request["version"] + 1,
        )
        self.change(tx, f"request.{status}", "coordination_request", request, before)

    def settle_open(
        self,
        tx: Tx,
        kinds: Iterable[str],
        status: str,
        note: str,
        *,
        to_region: str | None = None,
        keep_region: str | None = None,
        assignment_id: Any = None,
    ) -> None:
        kinds = set(kinds)
        for request in self.requests:
            if request["status"] != "open" or request["kind"] not in kinds:
                continue
            if to_region is not None and request["to_region"] != to_region:
                continue
            if keep_region is None or request["to_region"] != keep_region:
                self.settle(tx, request, status, note, assignment_id)

    def ask(self, on: dt.date) -> None:
        """A region holding the client asks another region something (kind ``other``)."""
        if self.ended(on):
            return
        holders = self.holders(on)
        region = holders.organising
        if holders.residence and holders.residence != region and self.rng.random() < 0.3:
            region = holders.residence
        other = holders.organising if region != holders.organising else holders.residence
        if other is None or other == region:
            other = self.w.region(exclude=region)
        tx = self.begin(on, region, "coordinator")
        request = self.open_request(tx, on, "other", other, message=self.rng.choice(OTHER_MESSAGES))
        self.commit(tx, on)
        outcome = self.rng.choices(("accept", "decline", "cancel", None), weights=(0.6, 0.2, 0.1, 0.1))[0]
        if outcome:
            self.at(on + dt.timedelta(days=self.rng.randrange(1, 25)), self.answer_request, request, outcome)

    def answer_request(self, on: dt.date, request: dict[str, Any], outcome: str) -> None:
        if request["status"] != "open":
            return
        if outcome == "cancel":
            tx = self.begin(on, request["from_region"])
            self.settle(tx, request, "cancelled", "no longer needed")
        else:
            tx = self.begin(on, request["to_region"], "coordinator")
            status = "accepted" if outcome == "accept" else "declined"
            self.settle(tx, request, status, "done" if outcome == "accept" else "not ours to do")
        self.commit(tx, on)

    # ------------------------------------------------------------------ moves and transfers

    def move(self, on: dt.date) -> None:
        """``move_client``: the old residence ends, the new one begins; another region is asked."""
        old = self.open_period(RESIDENCE)
        if self.ended(on) or not old["valid_from"] < on:
            return
        organising = self.open_period(ORGANISING)["region"]
        new = self._destination(old)
        if (new["region"], new["municipality"], new["outside"]) == (
            old["region"],
            old["municipality"],
            old["residence_outside"],
        ):
            return
        by = organising if old["region"] is None or self.rng.random() < 0.6 else old["region"]
        tx = self.begin(on, by, "system")
        before = SHAPES["responsibility_period"].snapshot(old)
        old.update(valid_to=on, valid_to_recorded_at=tx.at)
        self.change(tx, "residence.ended", "responsibility_period", old, before)
        period = self._period(tx, RESIDENCE, new["region"], new["municipality"], new["outside"], on)
        self.periods.append(period)
        self.change(tx, "client.moved", "responsibility_period", period)
        if new["region"] != old["region"]:
            for assignment in self.running(on):
                if assignment["responsibility"] == RESIDENCE:
                    self.close_assignment(tx, assignment, on, "moved")
            self.settle_open(
                tx, [ASSIGN_REQUEST[RESIDENCE]], "cancelled", "the client moved elsewhere", keep_region=new["region"]
            )
            if new["region"] is not None and new["region"] != organising:
                self.open_request(
                    tx,
                    on,
                    ASSIGN_REQUEST[RESIDENCE],
                    new["region"],
                    from_region=organising,
                    details={"effective_date": str(on)},
                )
        self.reconcile(tx, on, "moved")
        self.commit(tx, on)

    def _destination(self, old: dict[str, Any]) -> dict[str, Any]:
        chance, region = self.rng.random(), old["region"]
        if region is not None and chance < 0.55 and len(self.w.regions[region].municipalities) > 1:
            return self.residence(None, self.rng.choice(self.w.regions[region].municipalities), None)
        if region is None or chance < 0.97:
            target = self.w.region(exclude=region)
            municipalities = self.w.regions[target].municipalities
            if municipalities and self.rng.random() < 0.85:
                return self.residence(None, self.rng.choice(municipalities), None)
            return self.residence(target, None, None)
        if self.rng.random() < 0.5 and self.w.aland:
            return self.residence(None, self.rng.choice(self.w.aland), None)
        return self.residence(None, None, "abroad")

    def propose_transfer(self, on: dt.date) -> None:
        """``propose_organising_transfer``: asked of the receiver; it takes effect when accepted."""
        current = self.open_period(ORGANISING)
        if self.ended(on) or not current["valid_from"] + DAY <= on:
            return
        if any(r["kind"] == "accept_organising_transfer" and r["status"] == "open" for r in self.requests):
            return
        residence = self.open_period(RESIDENCE)["region"]
        receiver = residence if residence and residence != current["region"] and self.rng.random() < 0.85 else None
        receiver = receiver or self.w.region(exclude=current["region"])
        effective = on + dt.timedelta(days=self.rng.randrange(1, 21))
        if effective > self.row["aftercare_end"]:
            return
        reason = self.rng.choice(TRANSFER_REASONS)
        tx = self.begin(on, current["region"], "coordinator")
        request = self.open_request(
            tx,
            on,
            "accept_organising_transfer",
            receiver,
            message=reason,
            details={"effective_date": effective.isoformat(), "reason": reason},
        )
        self.commit(tx, on)
        outcome = self.rng.choices(("accept", "decline", "cancel", None), weights=(0.8, 0.12, 0.05, 0.03))[0]
        if outcome:
            self.at(effective, self.answer_transfer, request, outcome)

    def answer_transfer(self, on: dt.date, request: dict[str, Any], outcome: str) -> None:
        if request["status"] != "open":
            return
        if outcome != "accept" or not self._transferable(request):
            self.answer_request(on, request, "decline" if outcome == "accept" else outcome)
            return
        tx = self.begin(on, request["to_region"], "coordinator")
        self.transfer(tx, on, request)
        self.settle(tx, request, "accepted", "we take over")
        self.commit(tx, on)

    def _transferable(self, request: dict[str, Any]) -> bool:
        effective = dt.date.fromisoformat(request["details"]["effective_date"])
        old = self.open_period(ORGANISING)
        if old["region"] != request["from_region"] or not old["valid_from"] < effective <= self.row["aftercare_end"]:
            return False
        end = aftercare.aftercare_end(self.row["birth_date"], self.w.regions[request["to_region"]].end_age)
        return self.row["end_date"] is not None or end >= effective

    def transfer(self, tx: Tx, on: dt.date, request: dict[str, Any]) -> None:
        """``transfer_organising`` on the effective date: the receiver's period and age limit begin."""
        effective = dt.date.fromisoformat(request["details"]["effective_date"])
        receiver = request["to_region"]
        old = self.open_period(ORGANISING)
        before = SHAPES["responsibility_period"].snapshot(old)
        old.update(valid_to=effective, valid_to_recorded_at=tx.at)
        self.change(tx, "organising.ended", "responsibility_period", old, before)
        period = self._period(tx, ORGANISING, receiver, None, None, effective)
        self.periods.append(period)
        self.change(tx, "organising.transferred", "responsibility_period", period)
        for assignment in self.running(effective):
            if assignment["responsibility"] == ORGANISING or assignment["region"] == receiver:
                self.close_assignment(tx, assignment, effective, "organising_transferred")
                if assignment["region"] == receiver:  # the residence worker often takes the organising role
                    worker = self.staff.by_id[assignment["worker_id"]]
                    if self.rng.random() < 0.7:
                        self.hints[(ORGANISING, receiver)] = worker
        if self.row["end_date"] is None:
            end = aftercare.aftercare_end(self.row["birth_date"], self.w.regions[receiver].end_age)
            if end != self.row["aftercare_end"]:
                before = SHAPES["client"].snapshot(self.row)
                self.row.update(aftercare_end=end, updated_at=tx.at, version=self.row["version"] + 1)
                self.change(tx, "client.aftercare_end_changed", "client", self.row, before)
        self.settle_open(
            tx,
            [ASSIGN_REQUEST[ORGANISING]],
            "cancelled",
            "the organising responsibility moved",
            to_region=old["region"],
        )
        if self.open_period(RESIDENCE)["region"] == receiver:
            self.settle_open(
                tx,
                [ASSIGN_REQUEST[RESIDENCE]],
                "cancelled",
                "the organising responsibility moved to the residence region",
                to_region=receiver,
            )
        self.reconcile(tx, on, "organising_transferred")

    # ------------------------------------------------------------------ the client row

    def end_early(self, on: dt.date) -> None:
        """``end_client``: aftercare ends before the age limit; assignments end, open requests cancelled."""
        if self.ended(on) or self.row["end_date"] is not None:
            return
        organising = self.holders(on).organising
        end = max(on - dt.timedelta(days=self.rng.randrange(1, 11)), self.last_write, self.row["aftercare_start"])
        tx = self.begin(on, organising)
        before = SHAPES["client"].snapshot(self.row)
        self.row.update(
            end_date=end,
            end_reason=self.rng.choice(EARLY_END_REASONS),
            aftercare_end=end,
            version=self.row["version"] + 1,
            updated_at=tx.at,
        )
        self.change(tx, "client.ended", "client", self.row, before)
        for assignment in self.running(end + DAY):
            self.close_assignment(tx, assignment, end + DAY, "aftercare_ended")
        if end < on:
            self.settle_open(tx, REQUEST_KINDS, "cancelled", "aftercare ended")
        self.reconcile(tx, on, "aftercare_ended")
        self.commit(tx, on)

    def change_support(self, on: dt.date) -> None:
        """``update_client``: a new support level (special only with a social worker organising)."""
        if self.ended(on):
            return
        level = self.row["support_level"]
        new = {"standard": "enhanced", "enhanced": "special", "special": "enhanced"}[level]
        if new == "special":
            named = [a for a in self.running(on) if a["responsibility"] == ORGANISING]
            if any(self.staff.by_id[a["worker_id"]]["role"] != "social_worker" for a in named):
                return
        tx = self.begin(on, self.holders(on).organising)
        before = SHAPES["client"].snapshot(self.row)
        self.row.update(support_level=new, version=self.row["version"] + 1, updated_at=tx.at)
        self.change(tx, "client.updated", "client", self.row, before)
        self.commit(tx, on)

    # ------------------------------------------------------------------ reads (the access log)

    def read(self, at: dt.datetime, caller: Any, method: str, endpoint: str) -> None:
        on = at.date()
        organising = self.period(ORGANISING, on)
        organiser = organising["region"] if organising else None
        self.w.reads.append(Read(at, self.w.order(), caller, method, endpoint, [self.row["id"]], [organiser]))

    def plan_reads(self) -> None:
        """Reads by the regions holding the client on the day (systems and coordinators), and a few audits."""
        first = self.row["created_at"].date()
        last = min(self.row["aftercare_end"] + dt.timedelta(days=60), self.w.last)
        if last <= first:
            return
        count = int(self.reads_per_month * (last - first).days / 30.4 + self.rng.random())
        endpoints = [(method, path) for method, path, _ in READS]
        weights = [weight for _, _, weight in READS]
        for _ in range(count):
            on = self.w.day(first, last)
            holders = self.holders(on)
            region = holders.organising
            if holders.residence and holders.residence != region and self.rng.random() < 0.35:
                region = holders.residence
            role = "system" if self.rng.random() < 0.7 else "coordinator"
            purpose = "care" if role == "system" and self.rng.random() < 0.4 else None
            method, path = self.rng.choices(endpoints, weights=weights)[0]
            self.read(self.w.moment(on), self.w.caller(region, role, purpose), method, path)
        if self.rng.random() < 0.004:
            on = self.w.day(first, last)
            self.read(self.w.moment(on), self.w.caller(None), "GET", "/v1/clients/{client_id}/history")
