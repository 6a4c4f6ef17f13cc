"""The CRM connector: a task over HTTP, made idempotent by the Idempotency-Key header.

Every failure is one of our sentences with the HTTP status ("The CRM answered HTTP 503 (server
error)."); the answer's body and the exception's text go to `detail`, which is logged, never stored.
"""
import httpx

from orchestrator.execution.connectors import endpoints
from orchestrator.execution.connectors.base import (
    ExternalRef,
    PermanentError,
    TransientError,
    described,
    excerpt,
    not_describable,
    wire_problem,
)
from orchestrator.execution.models import ActionIntent

SETTING_HINT = "set REVPLAN_CRM_BASE_URL, or base_url in the tenant's crm connector config"

_STATUS_PHRASES = {
    400: "request refused", 401: "credentials refused", 403: "not allowed", 404: "not found",
    409: "conflict", 422: "request refused", 429: "rate limited",
}


TASKS_PATH = "/tasks"


def task_request_body(intent: ActionIntent) -> dict:
    """The JSON body of the task request: what execute sends and the preview shows."""
    account = intent.account
    return {
        "subject": intent.parameters.get("subject") or f"Support risk review for {account.name}",
        "account_external_id": account.external_id,
        "account_name": account.name,
        "action_type": intent.action_type,
        "details": intent.parameters,
    }


def _status_phrase(status: int) -> str:
    if status in _STATUS_PHRASES:
        return _STATUS_PHRASES[status]
    if status >= 500:
        return "server error"
    if 300 <= status < 400:
        return "a redirect, which is not followed"
    if status >= 400:
        return "request refused"
    return "an answer the connector does not expect"


def _answered(response: httpx.Response, doing: str = "") -> str:
    return f"The CRM answered HTTP {response.status_code} ({_status_phrase(response.status_code)}){doing}."


def _refused(refused: endpoints.EndpointRefused) -> PermanentError:
    return PermanentError(f"The CRM endpoint was refused: {refused.problem}; an endpoint a tenant sets must be "
                          "a public https address.", detail=refused.detail)


def _retry_after_seconds(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


class CrmConnector:
    name = "crm"

    def __init__(self, settings: dict, *, tenant_endpoint: bool = True):
        """`tenant_endpoint`: the base_url is a tenant's, so it goes through the SSRF guard (endpoints.py);
        False only for the deployment's own REVPLAN_CRM_BASE_URL."""
        self.base_url = (settings.get("base_url") or "").rstrip("/")
        self.api_key = settings.get("api_key") or ""
        self.timeout = float(settings.get("timeout_seconds") or 10)
        self.tenant_endpoint = tenant_endpoint

    def _headers(self, intent: ActionIntent) -> dict:
        headers = {"Idempotency-Key": intent.effect_key, "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _excerpt(self, text: str) -> str:
        return excerpt(text, secrets=(self.api_key,))

    def _endpoint(self) -> endpoints.Endpoint | None:
        """The tenant's endpoint, checked without a lookup; None for the deployment's (trusted) one."""
        if not self.tenant_endpoint:
            return None
        try:
            return endpoints.parse_tenant_endpoint(self.base_url)
        except endpoints.EndpointRefused as refused:
            raise _refused(refused) from None

    def validate(self, intent: ActionIntent) -> None:
        if not self.base_url:
            raise PermanentError(f"The CRM connector is not configured: {SETTING_HINT}.")
        self._endpoint()

    def _targets(self, url: httpx.URL) -> list[tuple[httpx.URL, dict, dict]]:
        """(URL, extra headers, extensions) to try in turn. For a tenant's endpoint: one per vetted address,
        the request pinned to it so nothing resolves the name again (DNS rebinding); the Host header and
        TLS (SNI and certificate check, through `sni_hostname`) still use the name."""
        endpoint = self._endpoint()
        if endpoint is None or endpoint.allow_listed:
            return [(url, {}, {})]
        try:
            records = endpoints.resolve_vetted(endpoint.host, endpoint.port)
        except endpoints.EndpointRefused as refused:
            raise _refused(refused) from None
        except endpoints.EndpointUnresolved as unresolved:
            raise TransientError("Could not connect to the CRM (its name did not resolve).",
                                 detail=str(unresolved)) from None
        addresses = list(dict.fromkeys(record[4][0] for record in records))
        host_header = {"Host": url.netloc.decode("ascii")}
        return [(url.copy_with(host=address), host_header, {"sni_hostname": url.host}) for address in addresses]

    def _request(self, method: str, path: str, intent: ActionIntent, **kwargs) -> httpx.Response:
        url = httpx.URL(f"{self.base_url}{path}")
        targets = self._targets(url)
        # A proxy from the environment would resolve a tenant's name itself, past the guard; the
        # deployment's own endpoint may need the operator's proxy.
        trust_env = not self.tenant_endpoint
        for index, (target, extra_headers, extensions) in enumerate(targets):
            try:
                with httpx.Client(timeout=self.timeout, trust_env=trust_env) as client:
                    return client.request(method, target, headers={**self._headers(intent), **extra_headers},
                                          extensions=extensions, **kwargs)
            except httpx.ConnectError as error:
                if index + 1 < len(targets):
                    continue  # nothing was sent; the name's next vetted address may answer
                raise TransientError(f"Could not connect to the CRM ({wire_problem(error)}).",
                                     detail=self._excerpt(str(error))) from error
            except httpx.TimeoutException as error:
                raise TransientError(f"The CRM timed out after {self.timeout:g} s.",
                                     detail=self._excerpt(str(error))) from error
            except httpx.TransportError as error:
                raise TransientError(f"The connection to the CRM failed ({wire_problem(error)}).",
                                     detail=self._excerpt(str(error))) from error
        raise AssertionError("unreachable: _targets returns at least one target")

    def preview(self, intent: ActionIntent) -> dict:
        try:
            self.validate(intent)
        except PermanentError as error:
            return not_describable(self.name, error)
        body = task_request_body(intent)
        # The tenant's own URL as it set it (credentials written into it masked); the deployment's is the
        # operator's and not named to tenants. The api key is never shown.
        if self.tenant_endpoint:
            target = f"POST {excerpt(self.base_url, secrets=(self.api_key,))}{TASKS_PATH}"
        else:
            target = f"POST {TASKS_PATH} on the deployment's CRM"
        return described(self.name, target=target, body=body, summary=(
            f'Creates the CRM task "{body["subject"]}" for {body["account_name"]} ({target}, with an '
            "Idempotency-Key, so a retry finds the same task)."))

    def execute(self, intent: ActionIntent) -> ExternalRef:
        self.validate(intent)
        response = self._request("POST", TASKS_PATH, intent, json=task_request_body(intent))
        status = response.status_code
        if status in (200, 201):
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise PermanentError(f"The CRM answered HTTP {status} but not with a JSON object.",
                                     http_status=status, detail=self._excerpt(response.text))
            task_id = body.get("id")
            if isinstance(task_id, bool) or not isinstance(task_id, str | int) or str(task_id) == "":
                raise PermanentError(f"The CRM answered HTTP {status} but returned no task id.",
                                     http_status=status, detail=self._excerpt(response.text))
            return ExternalRef(self.name, {"task_id": str(task_id)})
        detail = self._excerpt(response.text)
        if status == 429:
            raise TransientError(_answered(response), retry_after=_retry_after_seconds(response),
                                 http_status=status, detail=detail)
        if status >= 500:
            raise TransientError(_answered(response), http_status=status, detail=detail)
        raise PermanentError(_answered(response), http_status=status, detail=detail)

    def compensate(self, intent: ActionIntent, ref: ExternalRef) -> None:
        response = self._request("DELETE", f"/tasks/{ref.ids['task_id']}", intent)
        status = response.status_code
        if status >= 500 or status == 429:
            raise TransientError(_answered(response, " while deleting the task"), http_status=status,
                                 detail=self._excerpt(response.text))
        if status not in (200, 202, 204, 404):
            raise PermanentError(_answered(response, " while deleting the task"), http_status=status,
                                 detail=self._excerpt(response.text))
