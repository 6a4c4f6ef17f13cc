"""The calendar connector: a draft meeting (VEVENT, STATUS:TENTATIVE, no attendees, so nothing is sent)
on a CalDAV server. The event UID is derived from the effect key, so a retry finds the first event."""
import uuid
from datetime import UTC, datetime, time, timedelta

import caldav
from caldav.lib import error as caldav_error
from django.utils import timezone
from icalendar import Calendar, Event

from orchestrator.execution.connectors.base import ExternalRef, PermanentError, TransientError
from orchestrator.execution.models import ActionIntent

# A fixed namespace: the same effect key gives the same UID on every machine, forever.
EVENT_UID_NAMESPACE = uuid.UUID("6f1c1d1e-4b7a-4c55-9a0e-2a9f3c7d8e10")
SETTING_HINT = "set REVPLAN_CALDAV_URL, or url in the tenant's calendar connector config"
DEFAULT_MEETING_MINUTES = 30
MEETING_HOUR_UTC = 15


def event_uid(effect_key: str) -> str:
    return str(uuid.uuid5(EVENT_UID_NAMESPACE, effect_key))


def proposed_start(intent: ActionIntent) -> datetime:
    """The parameters' `start`, else 15:00 UTC on the second weekday after the intent was made."""
    if intent.parameters.get("start"):
        return datetime.fromisoformat(intent.parameters["start"])
    day = (intent.created_at or timezone.now()).date() + timedelta(days=2)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime.combine(day, time(MEETING_HOUR_UTC), tzinfo=UTC)


def meeting_ical(intent: ActionIntent) -> str:
    account = intent.account
    start = proposed_start(intent)
    event = Event()
    event.add("uid", event_uid(intent.effect_key))
    event.add("dtstamp", timezone.now())
    event.add("dtstart", start)
    minutes = int(intent.parameters.get("duration_minutes", DEFAULT_MEETING_MINUTES))
    event.add("dtend", start + timedelta(minutes=minutes))
    event.add("summary", intent.parameters.get("subject") or f"Renewal meeting: {account.name}")
    renewal = account.renewal_date.isoformat() if account.renewal_date else "unknown"
    event.add("description", f"Draft by revplan (not sent). Account {account.name}; renewal date {renewal}.")
    event.add("status", "TENTATIVE")
    calendar = Calendar()
    calendar.add("prodid", "-//revplan//calendar connector//EN")
    calendar.add("version", "2.0")
    calendar.add_component(event)
    return calendar.to_ical().decode()


def _classify(error: Exception, doing: str) -> Exception:
    if isinstance(error, caldav_error.AuthorizationError):
        return PermanentError(f"The CalDAV server refused the credentials while {doing}.")
    if isinstance(error, caldav_error.DAVError):
        return TransientError(f"The CalDAV server failed while {doing}: {str(error)[:200]}")
    return TransientError(f"The CalDAV server could not be reached while {doing}: {str(error)[:200]}")


class CalendarConnector:
    name = "calendar"

    def __init__(self, settings: dict, *, tenant_slug: str):
        self.url = (settings.get("url") or "").rstrip("/") + "/"
        self.username = settings.get("username") or "revplan"
        self.password = settings.get("password") or ""
        self.timeout = float(settings.get("timeout_seconds") or 10)
        # Each tenant gets its own calendar unless its config names one.
        self.calendar_id = settings.get("calendar") or f"revplan-{tenant_slug}"
        self.calendar_url = settings.get("calendar_url") or f"{self.url}{self.username}/{self.calendar_id}/"

    def _client(self) -> caldav.DAVClient:
        return caldav.DAVClient(url=self.url, username=self.username, password=self.password, timeout=self.timeout)

    def _calendar(self, client: caldav.DAVClient) -> caldav.Calendar:
        calendar = client.calendar(url=self.calendar_url)
        try:
            calendar.get_display_name()
        except caldav_error.NotFoundError:
            try:
                calendar = client.principal().make_calendar(name=self.calendar_id, cal_id=self.calendar_id)
            except caldav_error.MkcalendarError:
                # Another worker made it between our look and our MKCALENDAR (409): use theirs.
                calendar = client.calendar(url=self.calendar_url)
                calendar.get_display_name()
        return calendar

    def validate(self, intent: ActionIntent) -> None:
        if self.url == "/":
            raise PermanentError(f"The calendar connector is not configured: {SETTING_HINT}.")
        if intent.parameters.get("start"):
            try:
                datetime.fromisoformat(intent.parameters["start"])
            except (TypeError, ValueError):
                raise PermanentError("The meeting's `start` parameter is not an ISO 8601 date-time.") from None

    def execute(self, intent: ActionIntent) -> ExternalRef:
        self.validate(intent)
        uid = event_uid(intent.effect_key)
        try:
            with self._client() as client:
                calendar = self._calendar(client)
                try:
                    event = calendar.event_by_uid(uid)
                except caldav_error.NotFoundError:
                    # PUT to <uid>.ics: even two racing writers end with one event.
                    event = calendar.save_event(meeting_ical(intent))
        except (caldav_error.DAVError, OSError) as error:
            raise _classify(error, "creating the draft meeting") from error
        return ExternalRef(
            self.name, {"event_uid": uid, "event_url": str(event.url), "calendar_url": self.calendar_url}
        )

    def compensate(self, intent: ActionIntent, ref: ExternalRef) -> None:
        try:
            with self._client() as client:
                calendar = self._calendar(client)
                try:
                    calendar.event_by_uid(ref.ids["event_uid"]).delete()
                except caldav_error.NotFoundError:
                    return
        except (caldav_error.DAVError, OSError) as error:
            raise _classify(error, "removing the draft meeting") from error
