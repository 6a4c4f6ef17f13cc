"""Django app config for the orchestrator."""
from django.apps import AppConfig


class OrchestratorConfig(AppConfig):
    name = "orchestrator"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # plans/ never imports orchestrator/: the describer of what a step will send is handed to it here.
        from orchestrator.execution.previews import describe_steps
        from plans import previews

        previews.register(describe_steps)
