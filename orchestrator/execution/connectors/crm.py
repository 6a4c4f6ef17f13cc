"""The CRM connector: a task over HTTP, made idempotent by the Idempotency-Key header."""
import httpx

from orchestrator.execution.connectors.base import ExternalRef, PermanentError, TransientError
from orchestrator.execution.models import ActionIntent

SETTING_HINT = "set REVPLAN_CRM_BASE_URL, or base_url in the tenant's crm connector config"


def _retry_after_seconds(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


class CrmConnector:
    name = "crm"

    def __init__(self, settings: dict):
        self.base_url = (settings.get("base_url") or "").rstrip("/")
        self.api_key = settings.get("api_key") or ""
        self.timeout = float(settings.get("timeout_seconds") or 10)

    def _headers(self, intent: ActionIntent) -> dict:
        headers = {"Idempotency-Key": intent.effect_key, "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def validate(self, intent: ActionIntent) -> None:
        if not self.base_url:
            raise PermanentError(f"The CRM connector is not configured: {SETTING_HINT}.")

    def _request(self, method: str, path: str, intent: ActionIntent, **kwargs) -> httpx.Response:
        try:
            return httpx.request(
                method, f"{self.base_url}{path}", headers=self._headers(intent), timeout=self.timeout, **kwargs
            )
        except httpx.TimeoutException as error:
            raise TransientError(f"The CRM did not answer within {self.timeout:g}s.") from error
        except httpx.TransportError as error:
            raise TransientError(f"The CRM could not be reached: {error}.") from error

    def execute(self, intent: ActionIntent) -> ExternalRef:
        self.validate(intent)
        account = intent.account
        response = self._request(
            "POST",
            "/tasks",
            intent,
            json={
                "subject": intent.parameters.get("subject") or f"Support risk review for {account.name}",
                "account_external_id": account.external_id,
                "account_name": account.name,
                "action_type": intent.action_type,
                "details": intent.parameters,
            },
        )
        if response.status_code in (200, 201):
            task_id = str(response.json().get("id", ""))
            if not task_id:
                raise PermanentError("The CRM accepted the task but returned no id.")
            return ExternalRef(self.name, {"task_id": task_id})
        if response.status_code == 429:
            raise TransientError("The CRM is rate limiting (HTTP 429).", retry_after=_retry_after_seconds(response))
        if response.status_code >= 500:
            raise TransientError(f"The CRM failed (HTTP {response.status_code}).")
        raise PermanentError(f"The CRM refused the task (HTTP {response.status_code}): {response.text[:200]}")

    def compensate(self, intent: ActionIntent, ref: ExternalRef) -> None:
        response = self._request("DELETE", f"/tasks/{ref.ids['task_id']}", intent)
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"The CRM could not delete the task (HTTP {response.status_code}).")
        if response.status_code not in (200, 202, 204, 404):
            raise PermanentError(f"The CRM refused to delete the task (HTTP {response.status_code}).")
