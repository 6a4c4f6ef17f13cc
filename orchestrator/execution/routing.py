"""A tenant's connector settings and action routes: written only here, by its tenant admins, each change ledgered.

Every write is one transaction: authority (plans.services.require_admin: TENANT_ADMIN of the tenant —
a superuser has no authority over a tenant it is not an admin of), the row lock, the model's own
validation (ConnectorConfig.full_clean: the SSRF guard and the settings rules), the row, and an entry
in the tenant's ledger chain with the values before and after. A change that changes nothing writes
nothing.

Secrets (connectors.config.SECRET_KEYS) are write-only: they come in apart from the other settings
(`secrets`), are kept when not mentioned, and leave this module only masked — "set" — in the ledger,
the admin and anywhere else a config is shown (`masked_settings`).
"""
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from orchestrator.execution.connectors.config import SECRET_KEYS, known_keys
from orchestrator.execution.models import ActionRoute, ConnectorConfig, ConnectorName
from plans import ledger
from plans.errors import Conflict, Reason, ValidationFailed
from plans.plan_types import ACTION_TYPES
from plans.services import require_admin

SECRET_SET = "set"


def secret_keys(connector: str) -> tuple[str, ...]:
    return SECRET_KEYS.get(connector, ())


def masked_settings(connector: str, settings: dict) -> dict:
    """`settings` as it may be shown or ledgered: only the connector's known non-secret keys in clear.

    A secret, and any key the connector does not know (a row saved before the rules), reads "set".
    """
    shown = set(known_keys(connector)) - set(secret_keys(connector))
    return {key: value if key in shown else SECRET_SET for key, value in sorted(settings.items())}


def settings_after(connector: str, current: dict, *, settings: dict, secrets: dict | None = None) -> dict:
    """The settings a change leaves: `settings` (every non-secret key; blank = unset) replaces the
    others, the current secrets stay unless `secrets` names them (a value sets one, None or "" clears it)."""
    secret_names = secret_keys(connector)
    given_secrets = sorted(key for key in settings if key in secret_names)
    if given_secrets:
        raise ValidationFailed("VALIDATION_ERROR", f"{', '.join(given_secrets)}: a secret is set on its own, "
                                                   "not among the other settings.")
    unknown_secrets = sorted(key for key in (secrets or {}) if key not in secret_names)
    if unknown_secrets:
        raise ValidationFailed("VALIDATION_ERROR", f"The {connector} connector has no secret "
                                                   f"{', '.join(unknown_secrets)}.")
    after = {key: value for key, value in settings.items() if value not in (None, "")}
    after.update({key: value for key, value in current.items() if key in secret_names and value not in (None, "")})
    for key, value in (secrets or {}).items():
        if value in (None, ""):
            after.pop(key, None)
        else:
            after[key] = value
    return after


def _changed_keys(before: dict, after: dict) -> list[str]:
    return sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))


def _require_valid(config: ConnectorConfig) -> None:
    try:
        config.full_clean(validate_unique=False)  # the unique pair is the row lock's and the constraint's
    except ValidationError as error:
        reasons = [Reason(field, message) for field, messages in error.message_dict.items() for message in messages]
        raise ValidationFailed("VALIDATION_ERROR", " ".join(reason.detail for reason in reasons), reasons) from None


def _save(row, *, conflict: str) -> None:
    # A new row races only another creation of the same one (the unique pair): the loser reloads.
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        raise Conflict("CONFLICT", conflict) from None


def _require_connector(connector: str) -> None:
    if connector not in ConnectorName.values:
        raise ValidationFailed("VALIDATION_ERROR", f"Unknown connector {connector!r}.")


def connector_config_set(*, tenant_id: UUID, connector: str, user, settings: dict,
                         secrets: dict | None = None) -> ConnectorConfig:
    """Create or change the tenant's settings for `connector` (see settings_after for what is kept)."""
    _require_connector(connector)
    with transaction.atomic():
        require_admin(user=user, tenant_id=tenant_id)
        config = ConnectorConfig.objects.select_for_update().filter(tenant_id=tenant_id, connector=connector).first()
        current = dict(config.settings) if config is not None else {}
        after = settings_after(connector, current, settings=settings, secrets=secrets)
        if config is not None and after == current:
            return config
        created = config is None
        if created:
            config = ConnectorConfig(tenant_id=tenant_id, connector=connector)
        config.settings = after
        _require_valid(config)
        _save(config, conflict=f"The {connector} settings were created meanwhile; reload them.")
        ledger.connector_config_changed(
            tenant_id, actor=ledger.user_actor(user), connector=connector,
            before=None if created else masked_settings(connector, current), after=masked_settings(connector, after),
            changed=_changed_keys(current, after) or ["settings"],
        )
    return config


def connector_config_delete(*, tenant_id: UUID, connector: str, user) -> None:
    """Remove the tenant's own settings for `connector`: the deployment's are used again."""
    with transaction.atomic():
        require_admin(user=user, tenant_id=tenant_id)
        config = ConnectorConfig.objects.select_for_update().filter(tenant_id=tenant_id, connector=connector).first()
        if config is None:
            return
        before = dict(config.settings)
        config.delete()
        ledger.connector_config_changed(
            tenant_id, actor=ledger.user_actor(user), connector=connector,
            before=masked_settings(connector, before), after=None, changed=sorted(before) or ["settings"],
        )


def action_route_set(*, tenant_id: UUID, action_type: str, connector: str, user) -> ActionRoute:
    """Send the tenant's `action_type` to `connector` rather than the catalogue's default."""
    _require_connector(connector)
    if action_type not in ACTION_TYPES:
        raise ValidationFailed("VALIDATION_ERROR", f"Unknown action type {action_type!r}.")
    with transaction.atomic():
        require_admin(user=user, tenant_id=tenant_id)
        route = ActionRoute.objects.select_for_update().filter(tenant_id=tenant_id, action_type=action_type).first()
        before = route.connector if route is not None else None
        if before == connector:
            return route
        if route is None:
            route = ActionRoute(tenant_id=tenant_id, action_type=action_type)
        route.connector = connector
        _save(route, conflict=f"A route for {action_type} was created meanwhile; reload it.")
        ledger.action_route_changed(tenant_id, actor=ledger.user_actor(user), action_type=action_type,
                                    before=before, after=connector)
    return route


def action_route_delete(*, tenant_id: UUID, action_type: str, user) -> None:
    """Remove the tenant's route for `action_type`: the catalogue's connector carries it out again."""
    with transaction.atomic():
        require_admin(user=user, tenant_id=tenant_id)
        route = ActionRoute.objects.select_for_update().filter(tenant_id=tenant_id, action_type=action_type).first()
        if route is None:
            return
        before = route.connector
        route.delete()
        ledger.action_route_changed(tenant_id, actor=ledger.user_actor(user), action_type=action_type,
                                    before=before, after=None)
