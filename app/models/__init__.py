"""All tables, imported so that ``SQLModel.metadata`` knows them (Alembic compares against it)."""

from app.models.assignment import Assignment, ComplianceGap
from app.models.audit import ChangeEvent
from app.models.caseload import RegionSettingsVersion
from app.models.client import Client, ClientExternalId, ResponsibilityPeriod
from app.models.cost import CostDecision, CostDecisionEvent
from app.models.integration import FeedEvent, FeedPosition, IdempotencyRecord, RateLimitBucket
from app.models.pair import WorkPair
from app.models.region import Municipality, Region
from app.models.request import CoordinationRequest
from app.models.webhook import WebhookAttempt, WebhookDelivery, WebhookSubscription
from app.models.worker import Worker

__all__ = [
    "Assignment",
    "ChangeEvent",
    "Client",
    "ClientExternalId",
    "ComplianceGap",
    "CoordinationRequest",
    "CostDecision",
    "CostDecisionEvent",
    "FeedEvent",
    "FeedPosition",
    "IdempotencyRecord",
    "Municipality",
    "RateLimitBucket",
    "Region",
    "RegionSettingsVersion",
    "ResponsibilityPeriod",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookSubscription",
    "WorkPair",
    "Worker",
]
