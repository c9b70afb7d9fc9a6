"""
The school inbox on the web: where a Key Adult reads and acknowledges Operation Encompass alerts.

Pages: the setting's alerts, newest first (``/``); one alert, showing exactly
the Encompass fields (``/alerts/{notification_id}``); acknowledging it
(``POST /alerts/{notification_id}/acknowledge``); and one child's history at
this setting (``/children/{child_ref}``).  Sessions, CSRF, headers and sign-in
come from `safebus.consumers.web.pages`.

Why it is built this way:

- **A Key Adult sees only their own setting.**  Every query names the setting
  URN bound to the signed-in account, never one taken from the request.  An id
  that belongs to another setting gets **404, not 403**: a 403 would confirm
  that the id exists, and so that some child at some school had an alert.
- **Exactly the Encompass fields.**  The alert page shows the child's name,
  date of birth, police reference, incident time, whether the child was
  present, and when the alert arrived, which is what the agreement releases
  to a school (domain reference A2), and nothing else from the envelope.
- **Children are named in URLs only by an opaque reference**, an HMAC of
  setting, name and date of birth under a key derived from the server secret.
  Names in URLs would end up in browser history, proxy logs and screenshots of
  the address bar; the HMAC is not reversible without the secret, differs
  between settings, and changes with the secret.
- **Acknowledgement is idempotent and reported once.**  The store keeps the
  first acknowledgement only; the ``encompass.acknowledged`` event has an id
  derived from the notification id, is built from the stored acknowledgement
  (so a re-send is identical), and goes to `on_acknowledged` only while the
  store has not marked it sent, under a lock, so a double click or a
  resubmitted form never yields two events.  A failed hand-over is retried on
  the next acknowledgement, or by `send_pending_acknowledgements`.
- **Post/redirect/get.**  Acknowledging answers with a redirect to the alert,
  so reloading the page never re-posts the form.
- **Decryption happens per request, in a worker thread.**  The store holds
  only sealed envelopes; the page opens them with the school's key as it
  renders, and an erased child's alert shows as erased.
- **Who read what is logged**: each alert or history viewed and each
  acknowledgement, by notification id, staff id and setting URN (the basis of
  an access audit).  Logs never carry a name, a date of birth, a police
  reference or the child reference.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from aiohttp import web

from safebus.consumers.inbox.key_adults import EducationSetting, KeyAdult, KeyAdults
from safebus.consumers.inbox.store import Acknowledgement, InboxStore, Opener, StoredAlert
from safebus.consumers.web.pages import (
    Clock,
    Principal,
    create_app,
    current_principal,
    render,
    require_login,
)
from safebus.consumers.web.server_secret import derived_key
from safebus.logs import get_logger
from safebus.schemas._base import event_metadata
from safebus.schemas.audit import FileTransferConfirmed
from safebus.schemas.encompass import Acknowledger, EncompassAcknowledged, EncompassNotification, KeyAdultRole

__all__ = [
    "AcknowledgedCallback",
    "DueByLookup",
    "PendingTransfer",
    "SchoolInbox",
    "TransferConfirmedCallback",
    "TransfersLookup",
    "acknowledgement_event_id",
]


@dataclass(frozen=True, kw_only=True)
class PendingTransfer:
    """A child-protection file this setting must send on after a move (from the deadline monitor)."""

    transfer_id: str
    subject: str
    new_setting_urn: str | None
    due_by: datetime


TransfersLookup = Callable[[str], list[PendingTransfer]]
"""setting URN -> its pending file transfers."""

TransferConfirmedCallback = Callable[[FileTransferConfirmed], None]
"""Hands a confirmation over (publishes the audit fact); raises if it could not."""

_TRANSFER_IDS = uuid.UUID("9d3b2a61-0f4e-4c7a-8b15-6e2c9a7d3f40")

AcknowledgedCallback = Callable[[EncompassAcknowledged], None]
"""Hands an acknowledgement event over (for example, publishes it); raises if it could not."""

DueByLookup = Callable[[str], datetime | None]
"""notification id -> when it must be acknowledged by, or None when no deadline is known."""

_ACKNOWLEDGEMENT_IDS = uuid.UUID("6f0c2d4e-8b1a-4c3f-9e5d-2a7b1c9d0e84")
"""Namespace of acknowledgement event ids (distinct from the router's and the receipts')."""

_NOTIFICATION_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_CHILD_REF = re.compile(r"^[0-9a-f]{32}$")
_ROLES = frozenset(role.value for role in KeyAdultRole)

_log = get_logger("consumers.school_web")


def acknowledgement_event_id(notification_id: str) -> str:
    """The one event id every ``encompass.acknowledged`` event for `notification_id` has."""
    return str(uuid.uuid5(_ACKNOWLEDGEMENT_IDS, f"encompass-acknowledged|{notification_id}"))


def _never_open(setting_urn: str, envelope: bytes) -> EncompassNotification | None:
    """An opener for lookups that need only the row (existence, status): decrypts nothing."""
    return None


class SchoolInbox:
    """The Key Adults' web inbox over an `InboxStore`; `app()` builds the aiohttp application."""

    def __init__(
        self,
        *,
        store: InboxStore,
        opener: Opener,
        key_adults: KeyAdults,
        settings: Mapping[str, EducationSetting],
        clock: Clock,
        due_by: DueByLookup,
        on_acknowledged: AcknowledgedCallback,
        secret: bytes,
        secure_cookies: bool = True,
        transfers: TransfersLookup | None = None,
        on_transfer_confirmed: TransferConfirmedCallback | None = None,
        web_state: Path | None = None,
    ) -> None:
        """
        Serve `store`'s alerts to the Key Adults in `key_adults`.

        `settings` maps each hosted setting's URN to its agency (the producer
        of its acknowledgements) and name; a Key Adult whose setting is not in
        it cannot sign in.  `secret` (at least 32 bytes) signs sessions and
        derives the child references.  Sessions and the sign-in throttle
        live in `web_state` (the directory the account commands end sessions
        in), or in memory when it is None.
        """
        self.store = store
        self.opener = opener
        self.key_adults = key_adults
        self.settings = dict(settings)
        self.clock = clock
        self.due_by = due_by
        self.on_acknowledged = on_acknowledged
        self.transfers = transfers or (lambda _urn: [])
        self.on_transfer_confirmed = on_transfer_confirmed
        self._confirmed: set[str] = set()
        self._secret = secret
        self._secure_cookies = secure_cookies
        self._web_state = web_state
        self._reporting = threading.Lock()
        self._child_key = derived_key(secret, "child-ref")

    # ------------------------------------------------------------------ accounts

    def _principal(self, key_adult: KeyAdult | None) -> Principal | None:
        if key_adult is None or key_adult.setting_urn not in self.settings:
            return None
        return Principal(user_id=key_adult.staff_id, display_name=key_adult.display_name,
                         roles=frozenset({key_adult.role.value}), scope=key_adult.setting_urn,
                         session_version=key_adult.credential_version)

    def _authenticate(self, staff_id: str, password: str) -> Principal | None:
        return self._principal(self.key_adults.authenticate(staff_id, password))

    def _resolve(self, staff_id: str) -> Principal | None:
        return self._principal(self.key_adults.get(staff_id))

    # ------------------------------------------------------------------ the app

    def app(self) -> web.Application:
        """The aiohttp application: sign-in and the inbox pages."""
        app = create_app(title="Operation Encompass inbox", secret=self._secret, authenticate=self._authenticate,
                         resolve=self._resolve, clock=self.clock, user_label="Staff ID",
                         secure_cookies=self._secure_cookies, state_dir=self._web_state)
        guard = require_login(roles=_ROLES)
        app.router.add_get("/", guard(self._inbox))
        app.router.add_get("/alerts/{notification_id}", guard(self._alert))
        app.router.add_post("/alerts/{notification_id}/acknowledge", guard(self._acknowledge))
        app.router.add_get("/children/{child_ref}", guard(self._child))
        app.router.add_get("/transfers", guard(self._transfers))
        app.router.add_post("/transfers/{transfer_id}/confirm", guard(self._confirm_transfer))
        return app

    def child_ref(self, setting_urn: str, notification: EncompassNotification) -> str:
        """The opaque reference of the notification's child at `setting_urn` (32 hex characters)."""
        name = "|".join(" ".join(part.split()).casefold() for part in (notification.child_first_name,
                                                                        notification.child_surname))
        message = f"child/1|{setting_urn}|{name}|{notification.child_date_of_birth.isoformat()}"
        return hmac.new(self._child_key, message.encode(), hashlib.sha256).hexdigest()[:32]

    # ------------------------------------------------------------------ pages

    async def _inbox(self, request: web.Request) -> web.StreamResponse:
        urn = current_principal(request).scope
        now = self.clock()

        def rows() -> list[dict[str, object]]:
            shown = []
            for alert in sorted(self.store.alerts(urn, self.opener), key=lambda a: (a.received_at, a.notification_id),
                                reverse=True):
                due = None if alert.acknowledged_at else self.due_by(alert.notification_id)
                n = alert.notification
                shown.append({
                    "notification_id": alert.notification_id,
                    "received_at": alert.received_at,
                    "child_name": f"{n.child_first_name} {n.child_surname}" if n else None,
                    "incident_at": n.incident_at if n else None,
                    "acknowledged_at": alert.acknowledged_at,
                    "due_by": due,
                    "overdue": due is not None and now > due,
                })
            return shown

        shown = await asyncio.to_thread(rows)
        return render(request, "school/inbox.html", setting_name=self.settings[urn].name, rows=shown,
                      waiting=sum(1 for r in shown if not r["acknowledged_at"]))

    async def _alert(self, request: web.Request) -> web.StreamResponse:
        principal = current_principal(request)
        urn = principal.scope
        alert = await asyncio.to_thread(self._own_alert, urn, request.match_info["notification_id"], self.opener)
        _log.info("school_web.alert_viewed", notification_id=alert.notification_id, setting_urn=urn,
                  staff_id=principal.user_id)
        due = None if alert.acknowledged_at else await asyncio.to_thread(self.due_by, alert.notification_id)
        child_ref = self.child_ref(urn, alert.notification) if alert.notification else None
        return render(request, "school/alert.html", setting_name=self.settings[urn].name, alert=alert, due_by=due,
                      child_ref=child_ref)

    async def _transfers(self, request: web.Request) -> web.StreamResponse:
        """Files to send on after moves, each named by the child's own alerts here (the monitor has only tokens)."""
        urn = current_principal(request).scope

        def rows() -> list[dict[str, object]]:
            alerts = self.store.alerts(urn, self.opener)
            shown: list[dict[str, object]] = []
            for transfer in self.transfers(urn):
                child = next((a.notification for a in alerts if a.notification is not None
                              and transfer.subject in a.notification.subjects), None)
                new = self.settings.get(transfer.new_setting_urn or "")
                shown.append({
                    "transfer_id": transfer.transfer_id,
                    "child_name": f"{child.child_first_name} {child.child_surname}" if child else None,
                    "child_date_of_birth": child.child_date_of_birth if child else None,
                    "new_setting": new.name if new else (f"URN {transfer.new_setting_urn}"
                                                         if transfer.new_setting_urn else "not known"),
                    "due_by": transfer.due_by,
                    "confirmed": transfer.transfer_id in self._confirmed,
                })
            return shown

        shown = await asyncio.to_thread(rows)
        return render(request, "school/transfers.html", setting_name=self.settings[urn].name, rows=shown)

    async def _confirm_transfer(self, request: web.Request) -> web.StreamResponse:
        principal = current_principal(request)
        urn = principal.scope
        transfer_id = request.match_info["transfer_id"]
        if not _NOTIFICATION_ID.match(transfer_id):
            raise web.HTTPNotFound
        pending = await asyncio.to_thread(self.transfers, urn)
        if transfer_id not in {t.transfer_id for t in pending}:
            raise web.HTTPNotFound  # another setting's transfer, or already closed
        if transfer_id not in self._confirmed and self.on_transfer_confirmed is not None:
            subject = next(t.subject for t in pending if t.transfer_id == transfer_id)
            now = self.clock()
            fact = FileTransferConfirmed(
                **event_metadata(FileTransferConfirmed, producer=self.settings[urn].agency_id, occurred_at=now,
                                 recorded_at=now, event_id=str(uuid.uuid5(_TRANSFER_IDS, transfer_id)),
                                 subjects=(subject,)),
                transfer_id=transfer_id, setting_urn=urn, staff_id=principal.user_id, confirmed_at=now,
            )
            await asyncio.to_thread(self.on_transfer_confirmed, fact)
            self._confirmed.add(transfer_id)
            _log.info("school_web.transfer_confirmed", transfer_id=transfer_id, event_id=fact.event_id,
                      setting_urn=urn, staff_id=principal.user_id)
        raise web.HTTPSeeOther("/transfers")

    async def _acknowledge(self, request: web.Request) -> web.StreamResponse:
        notification_id = request.match_info["notification_id"]
        await asyncio.to_thread(self._record_acknowledgement, current_principal(request), notification_id)
        raise web.HTTPSeeOther(f"/alerts/{notification_id}")

    async def _child(self, request: web.Request) -> web.StreamResponse:
        principal = current_principal(request)
        urn = principal.scope
        child_ref = request.match_info["child_ref"]
        if not _CHILD_REF.match(child_ref):
            raise web.HTTPNotFound

        def history() -> list[StoredAlert]:
            return [a for a in self.store.alerts(urn, self.opener)
                    if a.notification is not None and hmac.compare_digest(self.child_ref(urn, a.notification),
                                                                          child_ref)]

        found = await asyncio.to_thread(history)
        if not found:
            raise web.HTTPNotFound
        found.sort(key=lambda a: (a.received_at, a.notification_id), reverse=True)
        _log.info("school_web.history_viewed", notification_ids=[a.notification_id for a in found], setting_urn=urn,
                  staff_id=principal.user_id)
        first = found[0].notification
        assert first is not None
        return render(request, "school/child.html", setting_name=self.settings[urn].name, rows=found,
                      child_name=f"{first.child_first_name} {first.child_surname}",
                      date_of_birth=first.child_date_of_birth)

    def _own_alert(self, setting_urn: str, notification_id: str, opener: Opener) -> StoredAlert:
        """The setting's alert `notification_id`, opened with `opener`; 404 if the setting has none of that id."""
        alert = self.store.alert(setting_urn, notification_id, opener) if _NOTIFICATION_ID.match(
            notification_id) else None
        if alert is None:
            # Another setting's id looks exactly like an id that does not exist: no oracle.
            _log.info("school_web.alert_not_found", setting_urn=setting_urn)
            raise web.HTTPNotFound
        return alert

    # ------------------------------------------------------------------ acknowledging

    def _record_acknowledgement(self, principal: Principal, notification_id: str) -> None:
        urn = principal.scope
        self._own_alert(urn, notification_id, _never_open)
        role = KeyAdultRole(next(iter(principal.roles & _ROLES)))
        if self.store.acknowledge(notification_id, urn, staff_id=principal.user_id, role=role, at=self.clock()):
            _log.info("school_web.acknowledged", notification_id=notification_id, setting_urn=urn,
                      staff_id=principal.user_id, role=role.value)
        self._report(self.store.acknowledgements_unsent(urn))

    def acknowledgement_event(self, acknowledgement: Acknowledgement) -> EncompassAcknowledged:
        """
        The ``encompass.acknowledged`` event for a stored acknowledgement, produced by the setting's agency.

        Deterministic: its id comes from the notification id and its times are
        the stored acknowledgement's, so building it twice gives the same event.
        It names no subject and carries no personal data (notification id,
        staff id, role, time).  Raises KeyError if the setting is not hosted here.
        """
        at = acknowledgement.acknowledged_at
        return EncompassAcknowledged(
            **event_metadata(EncompassAcknowledged, producer=self.settings[acknowledgement.setting_urn].agency_id,
                             occurred_at=at, recorded_at=at,
                             event_id=acknowledgement_event_id(acknowledgement.notification_id)),
            notification_id=acknowledgement.notification_id, setting_urn=acknowledgement.setting_urn,
            acknowledged_by=Acknowledger(staff_id=acknowledgement.acknowledged_by.staff_id,
                                         role=acknowledgement.acknowledged_by.role),
            acknowledged_at=at,
        )

    def send_pending_acknowledgements(self) -> list[str]:
        """Hand over every acknowledgement not yet reported (of every hosted setting); return the event ids sent."""
        return self._report(self.store.acknowledgements_unsent())

    def _report(self, due: list[Acknowledgement]) -> list[str]:
        sent: list[str] = []
        with self._reporting:  # two clicks at once must not both see "unsent"
            still_due = {a.notification_id for a in self.store.acknowledgements_unsent()}
            for acknowledgement in due:
                if acknowledgement.notification_id not in still_due or acknowledgement.setting_urn not in self.settings:
                    continue
                event = self.acknowledgement_event(acknowledgement)
                try:
                    self.on_acknowledged(event)
                except Exception:  # noqa: BLE001 - the acknowledgement is stored; the next attempt re-sends it
                    _log.exception("school_web.acknowledgement_not_reported", event_id=event.event_id,
                                   notification_id=event.notification_id)
                    continue
                self.store.acknowledgement_sent(acknowledgement.notification_id, at=self.clock())
                _log.info("school_web.acknowledgement_reported", event_id=event.event_id,
                          notification_id=event.notification_id)
                sent.append(event.event_id)
        return sent
