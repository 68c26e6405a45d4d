"""Example bodies for the OpenAPI document: one young person's aftercare, told consistently.

Aino (synthetic) is organised by Southwest Finland (05) and lives in Tampere, Pirkanmaa (08).
Her identity code ``150305A901E`` is a test code: individual number 9xx, valid checksum; a
deployment accepts it only with ``SILTA_ACCEPT_TEMPORARY_IDS=true``. tests/test_openapi_contract.py
validates every example against the schema it documents.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

CLIENT_ID = "216cf751-f9a7-443f-a03e-8368ea6f0c22"
WORKER_ID = "968279b6-28c4-4839-ab67-a2f0e381bbf1"
RESIDENCE_WORKER_ID = "f93b7e68-2cb8-4c26-b071-24bc2a678d2b"
ASSIGNMENT_ID = "43b62e1d-15c4-4a4c-83c5-ec2efeb19e57"
RESIDENCE_ASSIGNMENT_ID = "12815e56-4daa-4fc1-8948-01ab16933412"
PAIR_ID = "b55e7a04-0610-4a22-bdcd-2d796fad8e34"
DECISION_ID = "0666b7ed-40bd-4dde-a0e0-09571f81840e"
REQUEST_ID = "e3fdc446-d811-408c-be74-18d5d17ea564"
GAP_ID = "8d085ea0-9857-48c8-bdd6-54e5cd74a2b5"


REGISTERED: list[dict[str, Any]] = []


def config(*values: dict[str, Any]) -> Any:
    """A model's ``model_config`` adding these JSON Schema ``examples`` (pydantic merges the bases' config).

    Typed ``Any``: SQLModel declares ``model_config`` with its own TypedDict, which ``ConfigDict`` is not.
    """
    REGISTERED.extend(values)
    return ConfigDict(json_schema_extra={"examples": list(values)})


def without_nulls(value: Any) -> Any:
    """What FastAPI publishes of an example: it drops ``None`` members (``exclude_none``) from the document."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def restored(published: Any) -> Any:
    """The registered example FastAPI published as ``published``, nulls and all."""
    return next((value for value in REGISTERED if without_nulls(value) == published), published)


# Request bodies

CLIENT_CREATE = {
    "personal_id": "150305A901E",
    "first_name": "Aino",
    "last_name": "Mäkinen",
    "organising_region": "05",
    "residence_region": "08",
    "residence_municipality": "837",
    "aftercare_start": "2026-09-01",
    "support_level": "enhanced",
    "external_ids": [{"system": "pegasos-varha", "id": "A-20931"}],
}
CLIENT_UPDATE = {"support_level": "special", "address_protection": True}
CLIENT_SEARCH_BY_CODE = {"personal_id": "150305A901E"}
CLIENT_SEARCH_BY_EXTERNAL_ID = {"system": "pegasos-varha", "external_id": "A-20931"}
MOVE_CREATE = {"residence_region": "05", "residence_municipality": "853", "effective_date": "2026-12-01"}
ORGANISING_TRANSFER_CREATE = {
    "to_region": "08",
    "effective_date": "2027-01-01",
    "reason": "Asiakas on asunut Tampereella vakituisesti yli vuoden.",
}
CLIENT_END = {"end_date": "2027-05-31", "reason": "Nuori ei halua jatkaa jälkihuoltoa."}
WORKER_CREATE = {
    "region": "05",
    "name": "Laura Virtanen",
    "role": "social_worker",
    "service": "aftercare",
    "email": "laura.virtanen@varha.example",
    "external_id": "T-4411",
}
WORKER_UPDATE = {"email": "laura.virtanen@varha.example", "active": True}
REGION_SETTINGS_UPDATE = {
    "grace_days": 14,
    "aftercare_end_age": 25,
    "caseload_targets": {"social_worker": 45, "counsellor": 25},
    "caseload_weights": {"standard": 1.0, "enhanced": 1.5, "special": 2.0},
}
ASSIGNMENT_CREATE = {"responsibility": "organising", "worker_id": WORKER_ID, "start_date": "2026-09-01"}
ASSIGNMENT_END = {"end_date": "2027-02-01", "reason": "Työntekijä siirtyi toisiin tehtäviin."}
PAIR_CREATE = {"worker_ids": [WORKER_ID, RESIDENCE_WORKER_ID], "kind": "cross_region"}
PAIR_END = {"reason": "Asiakas muutti Turkuun."}
REQUEST_CREATE = {
    "client_id": CLIENT_ID,
    "to_region": "08",
    "kind": "assign_residence_worker",
    "due_date": "2026-12-14",
    "message": "Pyydämme nimeämään asuinalueen työntekijän.",
}
REQUEST_ANSWER = {"note": "Nimetään työntekijä tällä viikolla."}
COST_DECISION_CREATE = {
    "service_type": "supported_housing",
    "payer_region": "05",
    "payer_service": "aftercare",
    "valid_from": "2026-12-01",
    "valid_to": "2027-12-01",
    "legal_basis": "Lastensuojelulaki 417/2007 16 b §",
    "legal_basis_code": "LSL-16b",
    "reference": "VARHA/1234/2026",
    "amount_cap_eur": "1250.00",
    "notes": "Tukiasuminen Tampereella.",
}
COST_DECISION_AGREE = {"note": "Hyväksytty."}
COST_DECISION_DISPUTE = {"reason": "Asiakkaan kotikunta oli päätöshetkellä Turku."}
WEBHOOK_CREATE = {
    "url": "https://asiakastieto.varha.example/silta/webhook",
    "event_types": ["assignment.created", "client.moved", "gap.opened"],
    "secret": "vaihda-tama-pitkaan-satunnaiseen-merkkijonoon",
}
CHECKPOINT_CHECK = {
    "signature": "eyJhbGciOiJFUzI1NiIsImtpZCI6InNpbHRhLWF1ZGl0LTEifQ"
    ".eyJwb3NpdGlvbiI6NDIsImNoYWluX2hhc2giOiI5ZjNhIn0"
    ".MEUCIQDx1c2Vk"
}

# Imports: a JSON Lines file, one of these per line (the worker's region defaults to the caller's)

IMPORT_WORKER_LINE = {
    "type": "worker",
    "source_system": "pegasos-varha",
    **{key: WORKER_CREATE[key] for key in ("external_id", "name", "role", "service", "email")},
}
IMPORT_CLIENT_LINE = {
    "type": "client",
    "source_system": "pegasos-varha",
    "external_id": "A-20931",
    **{key: value for key, value in CLIENT_CREATE.items() if key != "external_ids"},
}
IMPORT_ASSIGNMENT_LINE = {
    "type": "assignment",
    "source_system": "pegasos-varha",
    "client_external_id": "A-20931",
    "worker_external_id": "T-4411",
    "responsibility": "organising",
    "start_date": "2026-09-01",
}

# Answers

CLIENT_PUBLIC = {
    "id": CLIENT_ID,
    "first_name": "Aino",
    "last_name": "Mäkinen",
    "birth_date": "2005-03-15",
    "organising_region": "05",
    "residence_region": "08",
    "residence_municipality": "837",
    "residence_outside": None,
    "address_protection": False,
    "support_level": "enhanced",
    "aftercare_start": "2026-09-01",
    "aftercare_end": "2028-03-14",
    "status": "active",
    "compliance": "gap",
    "access": "full",
    "personal_id": "150305A901E",
    "end_reason": None,
    "external_ids": [{"system": "pegasos-varha", "id": "A-20931"}],
    "missing": [
        {
            "id": GAP_ID,
            "client_id": CLIENT_ID,
            "responsibility": "residence",
            "region": "08",
            "since": "2026-09-01",
            "due": "2026-12-14",
            "overdue": False,
            "cause": "registered",
        }
    ],
    "created_at": "2026-11-30T11:08:14.724332Z",
    "updated_at": "2026-11-30T11:08:14.724352Z",
}
WORKER_PUBLIC = {
    "id": WORKER_ID,
    "region": "05",
    "name": "Laura Virtanen",
    "role": "social_worker",
    "service": "aftercare",
    "email": "laura.virtanen@varha.example",
    "external_id": "T-4411",
    "active": True,
    "created_at": "2026-11-30T11:08:14.626512Z",
    "updated_at": "2026-11-30T11:08:14.626526Z",
}
WORKER_UPDATED = {
    **WORKER_PUBLIC,
    "active": False,
    "updated_at": "2027-02-01T07:30:00Z",
    "affected_clients": [{"client_id": CLIENT_ID, "responsibility": "organising", "assignment_id": ASSIGNMENT_ID}],
}
ASSIGNMENT_PUBLIC = {
    "id": ASSIGNMENT_ID,
    "client_id": CLIENT_ID,
    "responsibility": "organising",
    "region": "05",
    "worker_id": WORKER_ID,
    "worker_name": "Laura Virtanen",
    "worker_role": "social_worker",
    "start_date": "2026-09-01",
    "end_date": None,
    "end_reason": None,
    "recorded_at": "2026-11-30T11:08:14.820036Z",
}
PAIR_PUBLIC = {
    "id": PAIR_ID,
    "client_id": CLIENT_ID,
    "kind": "cross_region",
    "status": "active",
    "worker_ids": [WORKER_ID, RESIDENCE_WORKER_ID],
    "assignment_ids": [ASSIGNMENT_ID, RESIDENCE_ASSIGNMENT_ID],
    "proposed_by_region": "05",
    "confirm_region": "08",
    "proposed_at": "2026-11-30T11:08:14.924771Z",
    "start_date": "2026-11-30",
    "end_date": None,
    "end_reason": None,
    "confirmed_at": "2026-11-30T11:08:14.946942Z",
}
REQUEST_PUBLIC = {
    "id": REQUEST_ID,
    "client_id": CLIENT_ID,
    "kind": "assign_residence_worker",
    "from_region": "05",
    "to_region": "08",
    "status": "open",
    "due_date": "2026-12-14",
    "message": "Pyydämme nimeämään asuinalueen työntekijän.",
    "details": {},
    "created_at": "2026-11-30T11:08:15.052784Z",
    "overdue": False,
    "answered_at": None,
    "answer_note": None,
    "assignment_id": None,
    "pair_id": None,
    "cost_decision_id": None,
}
COST_DECISION_PUBLIC = {
    "id": DECISION_ID,
    "client_id": CLIENT_ID,
    **COST_DECISION_CREATE,
    "status": "agreed",
    "proposed_by_region": "08",
    "counterparty_region": "05",
    "proposed_at": "2026-11-30T11:08:15.002793Z",
    "answered_at": "2026-11-30T11:08:15.029907Z",
    "answer_reason": "Hyväksytty.",
    "supersedes": None,
    "superseded_by": None,
}
COMPLIANCE_PUBLIC = {"status": "gap", "as_of": "2026-11-30", "missing": CLIENT_PUBLIC["missing"]}
REGION_PUBLIC = {
    "code": "05",
    "name_fi": "Varsinais-Suomen hyvinvointialue",
    "name_sv": "Egentliga Finlands välfärdsområde",
    "name_en": "Southwest Finland wellbeing services county",
    "settings": {
        "grace_days": 14,
        "aftercare_end_age": 23,
        "caseload_targets": {"social_worker": 50, "counsellor": 25, "special_counsellor": 25},
        "caseload_weights": {"standard": 1.0, "enhanced": 1.5, "special": 2.0},
    },
}
WEBHOOK_PUBLIC = {
    "id": "5d0f7a3e-8c61-4b2e-9f47-1a6e2c9b8d30",
    "region": "05",
    "url": WEBHOOK_CREATE["url"],
    "event_types": WEBHOOK_CREATE["event_types"],
    "active": True,
    "created_at": "2026-11-30T11:20:00Z",
    "created_by": "pegasos-varha-integration",
}
MUNICIPALITY_PUBLIC = {"code": "837", "name_fi": "Tampere", "region": "08", "classification_year": 2025}
IMPORT_REPORT = {
    "dry_run": False,
    "atomic": True,
    "applied": True,
    "lines": 3,
    "created": 2,
    "unchanged": 1,
    "updated": 0,
    "failed": 0,
    "errors": [],
}
IMPORT_REFUSED = {
    **IMPORT_REPORT,
    "applied": False,
    "unchanged": 0,
    "failed": 1,
    "errors": [{"line": 3, "code": "worker_not_found", "detail": "region 05 has no worker with external id T-4412"}],
}
