"""Work pairs and cost decisions of one client: what two regions (or two services) do together.

A mixin of ``dataset_life.Life``: the writes of ``app/services/pairs.py`` and ``costs.py`` (and the
answers of their coordination requests, ``answers.py``), applied in memory the way those services
apply them, recording what ``record_change`` records. Who answers a cost decision is
``app.domain.costs.counterparty``, its derived status ``status_of``, an overlap ``overlaps``.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dataset_world import SHAPES, Staff, Tx, World, active

from app.domain import costs as cost_rules
from app.domain.responsibility import ORGANISING, RESIDENCE, Holders

LIVE = ("proposed", "active")
SERVICE_PAYERS = {
    "mental_health_housing": ("mental_health_substance", "aftercare"),
    "substance_abuse_housing": ("mental_health_substance",),
    "disability_housing": ("disability",),
    "supported_housing": ("aftercare", "adult_social_work"),
    "aftercare_financial_support": ("aftercare",),
}
LEGAL_BASES = (
    ("Lastensuojelulaki 417/2007 76 §", "LsL-76"),
    ("Sosiaalihuoltolaki 1301/2014 21 b §", "ShL-21b"),
    ("Vammaispalvelulaki 675/2023 13 §", "VpL-13"),
)


class Cooperation:
    """The pairs and cost decisions of ``Life`` (whose state and writes they use)."""

    w: World
    rng: random.Random
    staff: Staff
    row: dict[str, Any]
    assignments: list[dict[str, Any]]
    requests: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    answers: dict[Any, dict[str, Any]]

    if TYPE_CHECKING:  # provided by Life

        def at(self, on: dt.date, handler: Callable[..., None], *args: Any, first: bool = False) -> None: ...
        def begin(self, on: dt.date, caller_region: str, role: str = "either") -> Tx: ...
        def commit(self, tx: Tx, on: dt.date, read_back: bool = True) -> None: ...
        def change(
            self, tx: Tx, action: str, table: str, row: dict[str, Any], before: dict[str, Any] | None = None
        ) -> None: ...
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
        ) -> dict[str, Any]: ...
        def settle(
            self, tx: Tx, request: dict[str, Any], status: str, note: str, assignment_id: Any = None
        ) -> None: ...
        def holders(self, on: dt.date) -> Holders: ...
        def running(self, on: dt.date) -> list[dict[str, Any]]: ...
        def ended(self, on: dt.date) -> bool: ...
        def worker_deactivated(self, on: dt.date, worker: dict[str, Any]) -> None: ...

    # ------------------------------------------------------------------ work pairs

    def _plan_pairs(self, on: dt.date, assignment: dict[str, Any]) -> None:
        if RESIDENCE in self.holders(on).required() and self.rng.random() < 0.2:
            self.at(on + dt.timedelta(days=self.rng.randrange(2, 45)), self.propose_pair, "cross_region")
        if assignment["responsibility"] == ORGANISING and self.rng.random() < 0.07:
            self.at(on + dt.timedelta(days=self.rng.randrange(7, 120)), self.propose_pair, "cross_service")

    @staticmethod
    def _live(pair: dict[str, Any], on: dt.date) -> bool:
        return pair["status"] in LIVE or (pair["valid_to"] is not None and pair["valid_to"] > on)

    def propose_pair(self, on: dt.date, kind: str) -> None:
        """``propose_pair``: the client's two named workers, or a named worker and another service's."""
        if self.ended(on):
            return
        named = {a["worker_id"]: a for a in self.running(on) if a["valid_from"] <= on}
        required = self.holders(on).required()
        if kind == "cross_region":
            if RESIDENCE not in required or any(p["kind"] == kind and self._live(p, on) for p in self.pairs):
                return
            holding = {a["responsibility"]: a for a in named.values() if a["region"] == required[a["responsibility"]]}
            if ORGANISING not in holding or RESIDENCE not in holding:
                return
            first = ORGANISING if self.rng.random() < 0.55 else RESIDENCE
            own = holding[first]
            other = self.staff.by_id[holding[RESIDENCE if first == ORGANISING else ORGANISING]["worker_id"]]
        else:
            organising = [a for a in named.values() if a["responsibility"] == ORGANISING]
            if not organising:
                return
            own = organising[0]
            place = own["region"] if self.rng.random() < 0.8 else (required.get(RESIDENCE) or own["region"])
            partner = self.staff.pick(place, "other_service", on)
            mine = self.staff.by_id[own["worker_id"]]
            if partner is None or partner["service"] == mine["service"]:
                return
            other = partner
        workers = sorted([(own["worker_id"], own), (other["id"], named.get(other["id"]))], key=lambda w: w[0])
        if not all(active(self.staff.by_id[w], on) for w, _ in workers):
            return
        ids = (workers[0][0], workers[1][0])
        if any((p["worker_1_id"], p["worker_2_id"]) == ids and self._live(p, on) for p in self.pairs):
            return
        tx = self.begin(on, own["region"])
        pair = SHAPES["work_pair"].row(
            id=self.w.uuid(),
            client_id=self.row["id"],
            kind=kind,
            status="proposed",
            worker_1_id=ids[0],
            worker_2_id=ids[1],
            assignment_1_id=workers[0][1]["id"] if workers[0][1] else None,
            assignment_2_id=workers[1][1]["id"] if workers[1][1] else None,
            proposed_by_region=own["region"],
            confirm_region=other["region"],
            proposed_by=tx.caller.subject,
            proposed_at=tx.at,
            valid_from=None,
            confirmed_at=None,
            confirmed_by=None,
            valid_to=None,
            ended_at=None,
            end_reason=None,
            version=1,
        )
        self.pairs.append(pair)
        self.change(tx, "pair.proposed", "work_pair", pair)
        if other["region"] != own["region"]:
            self.open_request(
                tx,
                on,
                "confirm_pair",
                other["region"],
                message=f"confirm the {kind} pair",
                details={"pair_id": pair["id"]},
                pair_id=pair["id"],
            )
        self.commit(tx, on)
        if other["inactive_from"] is not None and other["id"] not in named:
            self.at(other["inactive_from"], self.worker_deactivated, other, first=True)
        outcome = self.rng.choices(("confirm", "decline", None), weights=(0.85, 0.1, 0.05))[0]
        if outcome:
            self.at(on + dt.timedelta(days=self.rng.randrange(0, 15)), self.answer_pair, pair, outcome)

    def answer_pair(self, on: dt.date, pair: dict[str, Any], outcome: str) -> None:
        """``confirm_pair`` by the other side's coordinator, or a decline of its confirmation request."""
        if pair["status"] != "proposed" or self.ended(on):
            return
        asked = [r for r in self.requests if r["pair_id"] == pair["id"] and r["status"] == "open"]
        if outcome == "decline":
            tx = self.begin(on, pair["confirm_region"] if asked else pair["proposed_by_region"], "coordinator")
            self.finish(tx, pair, on, "confirmation declined" if asked else "withdrawn", asked[0] if asked else None)
            for request in asked:
                self.settle(tx, request, "declined", "confirmation declined")
            self.commit(tx, on)
            return
        ends = [
            a["valid_to"] for a in self.assignments if a["id"] in (pair["assignment_1_id"], pair["assignment_2_id"])
        ]
        ends = [end for end in ends if end is not None]
        if ends and min(ends) <= on:
            return  # pair_stale: a worker of the pair no longer holds the assignment
        tx = self.begin(on, pair["confirm_region"], "coordinator")
        before = SHAPES["work_pair"].snapshot(pair)
        pair.update(status="active", valid_from=on, confirmed_at=tx.at, confirmed_by=tx.caller.subject)
        pair["version"] += 1
        if ends:
            pair.update(status="ended", valid_to=min(ends), ended_at=tx.at, end_reason="assignment ends")
        self.change(tx, "pair.confirmed", "work_pair", pair, before)
        for request in asked:
            self.settle(tx, request, "accepted", "pair confirmed")
        self.commit(tx, on)
        if pair["status"] == "active" and self.rng.random() < 0.2:
            self.at(on + dt.timedelta(days=self.rng.randrange(60, 700)), self.end_pair, pair)

    def end_pair(self, on: dt.date, pair: dict[str, Any]) -> None:
        if pair["status"] != "active" or self.ended(on):
            return
        tx = self.begin(on, self.rng.choice((pair["proposed_by_region"], pair["confirm_region"])), "coordinator")
        self.finish(tx, pair, on, "no longer needed")
        self.commit(tx, on)

    def finish(self, tx: Tx, pair: dict[str, Any], end: dt.date, reason: str, answered: Any = None) -> None:
        """``pairs.finish``: a live pair ends on ``end`` (a proposal is withdrawn), its request cancelled."""
        before = SHAPES["work_pair"].snapshot(pair)
        if pair["valid_from"] is not None:
            pair["valid_to"] = max(min(end, pair["valid_to"] or end), pair["valid_from"])
        pair.update(status="ended", ended_at=tx.at, end_reason=reason, version=pair["version"] + 1)
        self.change(tx, "pair.ended", "work_pair", pair, before)
        for request in self.requests:
            if request["pair_id"] == pair["id"] and request["status"] == "open" and request is not answered:
                self.settle(tx, request, "cancelled", f"pair ended: {reason}")

    def end_pairs_of(
        self, tx: Tx, end: dt.date, reason: str, *, assignment_id: Any = None, worker_id: Any = None
    ) -> None:
        for pair in self.pairs:
            if assignment_id is not None:
                linked = assignment_id in (pair["assignment_1_id"], pair["assignment_2_id"])
            else:
                linked = worker_id in (pair["worker_1_id"], pair["worker_2_id"])
            if linked and (pair["status"] in LIVE or (pair["valid_to"] is not None and pair["valid_to"] > end)):
                self.finish(tx, pair, end, reason)

    # ------------------------------------------------------------------ cost decisions (rule 9)

    def status(self, decision: dict[str, Any]) -> str:
        answer = self.answers.get(decision["id"])
        superseded = any(
            d["supersedes_id"] == decision["id"] and self.answers.get(d["id"], {}).get("status") == "agreed"
            for d in self.decisions
        )
        return cost_rules.status_of(answer["status"] if answer else None, superseded).value

    def _overlapping(self, service_type: str, begins: dt.date, ends: dt.date | None, besides: tuple[Any, ...]) -> bool:
        """``costs._refuse_overlap``: an agreed, not superseded decision of the type covers one of these days."""
        return any(
            other["id"] not in besides
            and other["service_type"] == service_type
            and self.status(other) == "agreed"
            and cost_rules.overlaps(begins, ends, other["valid_from"], other["valid_to"])
            for other in self.decisions
        )

    def propose_cost(self, on: dt.date, service_type: str, supersedes: dict[str, Any] | None = None) -> None:
        """``costs.propose``: who pays for a service; the counterparty is asked to agree."""
        if self.ended(on) or (supersedes is not None and self.status(supersedes) in ("proposed", "superseded")):
            return
        holders = self.holders(on)
        proposer = holders.organising
        if holders.residence and holders.residence != proposer and self.rng.random() < 0.3:
            proposer = holders.residence
        if supersedes is not None:
            begins = supersedes["valid_from"]
        else:
            begins = (on.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        if begins > self.row["aftercare_end"]:
            return
        payer = holders.residence if holders.residence and self.rng.random() < 0.5 else holders.organising
        current = self.holders(max(on, begins))
        other = cost_rules.counterparty(
            proposer=proposer, payer=payer, organising=current.organising, residence=current.residence
        )
        if other is None:
            return
        months = self.rng.choice((None, 6, 12, 12, 24))
        ends = None if months is None else (begins + dt.timedelta(days=months * 30.5)).replace(day=1)
        replaced = supersedes["id"] if supersedes else None
        if self._overlapping(service_type, begins, ends, (replaced,)):
            return  # refused with 409 overlapping_decision: nothing is written
        basis, code = self.rng.choice(LEGAL_BASES)
        tx = self.begin(on, proposer, "coordinator")
        decision = SHAPES["cost_decision"].row(
            id=self.w.uuid(),
            client_id=self.row["id"],
            service_type=service_type,
            payer_region=payer,
            payer_service=self.rng.choice(SERVICE_PAYERS[service_type]),
            valid_from=begins,
            valid_to=ends,
            legal_basis=basis,
            legal_basis_code=code,
            reference=f"{on.year}/{self.rng.randrange(1, 9999)}" if self.rng.random() < 0.8 else None,
            amount_cap_cents=self.rng.randrange(500, 4500) * 100 if self.rng.random() < 0.7 else None,
            notes=None,
            proposed_by=tx.caller.subject,
            proposed_by_region=proposer,
            counterparty_region=other,
            supersedes_id=replaced,
            created_at=tx.at,
        )
        self.decisions.append(decision)
        self.change(tx, "cost_decision.proposed", "cost_decision", decision)
        self.open_request(
            tx,
            on,
            "review_cost_decision",
            other,
            message=f"agree or dispute: {service_type} paid by region {payer}",
            cost_decision_id=decision["id"],
        )
        self.commit(tx, on)
        outcome = self.rng.choices(("agreed", "disputed", None), weights=(0.8, 0.14, 0.06))[0]
        if outcome:
            self.at(on + dt.timedelta(days=self.rng.randrange(1, 31)), self.answer_cost, decision, outcome)

    def answer_cost(self, on: dt.date, decision: dict[str, Any], outcome: str) -> None:
        """``costs.answer`` by the counterparty's coordinator; the review request is settled with it."""
        if self.status(decision) != "proposed":
            return
        old = next((d for d in self.decisions if d["id"] == decision["supersedes_id"]), None)
        if outcome == "agreed" and (
            (old is not None and self.status(old) == "superseded")
            or self._overlapping(
                decision["service_type"],
                decision["valid_from"],
                decision["valid_to"],
                (decision["supersedes_id"], decision["id"]),
            )
        ):
            outcome = "disputed"
        reason = "" if outcome == "agreed" else "not ours to pay: the placement region pays"
        tx = self.begin(on, decision["counterparty_region"], "coordinator")
        answer = SHAPES["cost_decision_event"].row(
            id=self.w.uuid(),
            decision_id=decision["id"],
            status=outcome,
            reason=reason,
            actor=tx.caller.subject,
            actor_region=decision["counterparty_region"],
            created_at=tx.at,
        )
        self.answers[decision["id"]] = answer
        self.change(tx, f"cost_decision.{outcome}", "cost_decision_event", answer)
        for request in self.requests:
            if request["cost_decision_id"] == decision["id"] and request["status"] == "open":
                status = "accepted" if outcome == "agreed" else "declined"
                self.settle(tx, request, status, reason or f"decision {outcome}")
        self.commit(tx, on)
        if self.rng.random() < (0.12 if outcome == "agreed" else 0.5):
            later = on + dt.timedelta(
                days=self.rng.randrange(60, 400) if outcome == "agreed" else self.rng.randrange(7, 60)
            )
            self.at(later, self.propose_cost, decision["service_type"], decision)
