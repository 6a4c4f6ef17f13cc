"""The calendar connector: a draft meeting (VEVENT, STATUS:TENTATIVE, no attendees, so nothing is sent)
on a CalDAV server. The event UID is derived from the effect key, so a retry finds the first event.

The caldav library's errors carry URLs and response bodies: they are classified into our own sentences
here, and their text goes to `detail` (logged, never stored).
"""
import uuid
from datetime import UTC, datetime, time, timedelta

import caldav
import niquests
from caldav.lib import error as caldav_error
from django.utils import timezone
from icalendar import Calendar, Event

from orchestrator.execution.connectors import endpoints
from orchestrator.execution.connectors.base import (
    ConnectorError,
    ExternalRef,
    PermanentError,
    TransientError,
    described,
    excerpt,
    not_describable,
    wire_problem,
)
from orchestrator.execution.models import ActionIntent

# A fixed namespace: the same effect key gives the same UID on every machine, forever.
EVENT_UID_NAMESPACE = uuid.UUID("6f1c1d1e-4b7a-4c55-9a0e-2a9f3c7d8e10")
SETTING_HINT = "set REVPLAN_CALDAV_URL, or url in the tenant's calendar connector config"
DEFAULT_MEETING_MINUTES = 30
MAX_MEETING_MINUTES = 24 * 60
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


def meeting_minutes(intent: ActionIntent) -> int:
    """The parameters' `duration_minutes` (a whole number, or its digits as a string), else 30."""
    raw = intent.parameters.get("duration_minutes", DEFAULT_MEETING_MINUTES)
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 < raw <= MAX_MEETING_MINUTES:
        raise PermanentError(f"The meeting's `duration_minutes` parameter is not a whole number of minutes from 1 "
                             f"to {MAX_MEETING_MINUTES}.", detail=repr(raw)[:200])
    return raw


def meeting_event(intent: ActionIntent) -> dict:
    """The draft meeting's fields: what execute puts in the VEVENT and what the preview shows."""
    account = intent.account
    start = proposed_start(intent)
    renewal = account.renewal_date.isoformat() if account.renewal_date else "unknown"
    return {
        "uid": event_uid(intent.effect_key),
        "summary": intent.parameters.get("subject") or f"Renewal meeting: {account.name}",
        "start": start,
        "end": start + timedelta(minutes=meeting_minutes(intent)),
        "description": f"Draft by revplan (not sent). Account {account.name}; renewal date {renewal}.",
        "status": "TENTATIVE",
    }


def meeting_ical(intent: ActionIntent) -> str:
    fields = meeting_event(intent)
    event = Event()
    event.add("uid", fields["uid"])
    event.add("dtstamp", timezone.now())
    event.add("dtstart", fields["start"])
    event.add("dtend", fields["end"])
    event.add("summary", fields["summary"])
    event.add("description", fields["description"])
    event.add("status", fields["status"])
    calendar = Calendar()
    calendar.add("prodid", "-//revplan//calendar connector//EN")
    calendar.add("version", "2.0")
    calendar.add_component(event)
    return calendar.to_ical().decode()


def _when(start: datetime, end: datetime) -> str:
    """The meeting's time in words, in UTC (a `start` given without a zone is sent, and shown, as given)."""
    zone = " UTC" if start.tzinfo else " (local time of the calendar: the start names no zone)"
    if start.tzinfo:
        start, end = start.astimezone(UTC), end.astimezone(UTC)
    until = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%a %d %b %Y %H:%M}"
    return f"{start:%a %d %b %Y}, {start:%H:%M} to {until}{zone}"


def _classify(error: Exception, doing: str, *, timeout: float, resolver, password: str) -> ConnectorError:
    """Our sentence for what the CalDAV library raised; its text (URLs, bodies) only in `detail`."""
    detail = excerpt(str(error), secrets=(password,))
    refusal = resolver.refusal if resolver is not None else None
    if refusal is not None:
        return PermanentError(f"The CalDAV endpoint was refused while {doing}: {refusal.problem}; an endpoint a "
                              "tenant sets must be a public https address.", detail=refusal.detail)
    if isinstance(error, caldav_error.DAVError):
        status = error.status
        answered = f" (HTTP {status})" if status else ""
        if isinstance(error, caldav_error.AuthorizationError):
            return PermanentError(f"The CalDAV server refused the credentials{answered} while {doing}.",
                                  http_status=status, detail=detail)
        if isinstance(error, caldav_error.RateLimitError):
            return TransientError(f"The CalDAV server asked to slow down{answered} while {doing}.",
                                  retry_after=error.retry_after_seconds, http_status=status, detail=detail)
        if status and 400 <= status < 500 and status not in (408, 423, 429):
            return PermanentError(f"The CalDAV server refused the request{answered} while {doing}.",
                                  http_status=status, detail=detail)
        return TransientError(f"The CalDAV server failed{answered} while {doing}.", http_status=status,
                              detail=detail)
    if isinstance(error, niquests.exceptions.TooManyRedirects):
        return PermanentError(f"The CalDAV server answered with a redirect, which is not followed, while {doing}.",
                              detail=detail)
    if isinstance(error, niquests.exceptions.Timeout | TimeoutError):
        return TransientError(f"The CalDAV server timed out after {timeout:g} s while {doing}.", detail=detail)
    return TransientError(f"Could not connect to the CalDAV server ({wire_problem(error)}) while {doing}.",
                          detail=detail)


class CalendarConnector:
    name = "calendar"

    def __init__(self, settings: dict, *, tenant_slug: str, tenant_endpoint: bool = True):
        """`tenant_endpoint`: the url is a tenant's, so it goes through the SSRF guard (endpoints.py);
        False only for the deployment's own REVPLAN_CALDAV_URL."""
        self.tenant_endpoint = tenant_endpoint
        self.url = (settings.get("url") or "").rstrip("/") + "/"
        self.username = settings.get("username") or "revplan"
        self.password = settings.get("password") or ""
        self.timeout = float(settings.get("timeout_seconds") or 10)
        # Each tenant gets its own calendar unless its config names one.
        self.calendar_id = settings.get("calendar") or f"revplan-{tenant_slug}"
        self.calendar_url = settings.get("calendar_url") or f"{self.url}{self.username}/{self.calendar_id}/"

    def _check_endpoint(self) -> endpoints.Endpoint | None:
        """The tenant's endpoint, checked without a lookup; None for the deployment's (trusted) one."""
        if not self.tenant_endpoint:
            return None
        try:
            endpoints.parse_tenant_endpoint(self.calendar_url)
            return endpoints.parse_tenant_endpoint(self.url)
        except endpoints.EndpointRefused as refused:
            raise PermanentError(f"The CalDAV endpoint was refused: {refused.problem}; an endpoint a tenant sets "
                                 "must be a public https address.", detail=refused.detail) from None

    def _client(self) -> tuple[caldav.DAVClient, endpoints.VettingResolver | None]:
        """A client, and for a tenant's server the resolver that vets every address it connects to."""
        endpoint = self._check_endpoint()
        # A bare domain would start RFC 6764 discovery, which follows DNS records to other hosts.
        client = caldav.DAVClient(url=self.url, username=self.username, password=self.password, timeout=self.timeout,
                                  enable_rfc6764=False)
        if endpoint is None or endpoint.allow_listed:
            return client, None
        # caldav 3.6 makes its own niquests session and offers no resolver option, so the session is
        # replaced before its first request: one that resolves through the guard, follows no redirect
        # and ignores proxies from the environment (a proxy would resolve the name itself).
        resolver = endpoints.VettingResolver()
        session = niquests.Session(resolver=resolver)
        session.trust_env = False
        session.max_redirects = 0
        client.session.close()
        client.session = session
        return client, resolver

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
        """Configuration and parameters, before anything is sent: a bad one fails the intent at once."""
        if self.url == "/":
            raise PermanentError(f"The calendar connector is not configured: {SETTING_HINT}.")
        self._check_endpoint()
        if intent.parameters.get("start"):
            try:
                datetime.fromisoformat(intent.parameters["start"])
            except (TypeError, ValueError):
                raise PermanentError("The meeting's `start` parameter is not an ISO 8601 date-time.") from None
        meeting_minutes(intent)

    def preview(self, intent: ActionIntent) -> dict:
        try:
            self.validate(intent)
        except PermanentError as error:
            return not_describable(self.name, error)
        fields = meeting_event(intent)
        when = _when(fields["start"], fields["end"])
        if not intent.parameters.get("start"):
            when += " (no start was given: two weekdays after the step runs, at 15:00 UTC)"
        body = {**fields, "start": fields["start"].isoformat(), "end": fields["end"].isoformat(),
                "calendar": self.calendar_id}
        if self.tenant_endpoint:  # the tenant's own server; the deployment's address is not told to tenants
            body["calendar_url"] = excerpt(self.calendar_url, secrets=(self.password,))
        return described(self.name, target=f"calendar {self.calendar_id}", body=body, summary=(
            f'Drafts the tentative meeting "{fields["summary"]}" on {when} in calendar {self.calendar_id}. It has no '
            "attendees, so no one is invited."))

    def execute(self, intent: ActionIntent) -> ExternalRef:
        self.validate(intent)
        uid = event_uid(intent.effect_key)
        client, resolver = self._client()
        try:
            with client:
                calendar = self._calendar(client)
                try:
                    event = calendar.event_by_uid(uid)
                except caldav_error.NotFoundError:
                    # PUT to <uid>.ics: even two racing writers end with one event.
                    event = calendar.save_event(meeting_ical(intent))
        except (caldav_error.DAVError, OSError) as error:
            raise _classify(error, "creating the draft meeting", timeout=self.timeout, resolver=resolver,
                            password=self.password) from error
        return ExternalRef(
            self.name, {"event_uid": uid, "event_url": str(event.url), "calendar_url": self.calendar_url}
        )

    def compensate(self, intent: ActionIntent, ref: ExternalRef) -> None:
        client, resolver = self._client()
        try:
            with client:
                calendar = self._calendar(client)
                try:
                    calendar.event_by_uid(ref.ids["event_uid"]).delete()
                except caldav_error.NotFoundError:
                    return
        except (caldav_error.DAVError, OSError) as error:
            raise _classify(error, "removing the draft meeting", timeout=self.timeout, resolver=resolver,
                            password=self.password) from error
