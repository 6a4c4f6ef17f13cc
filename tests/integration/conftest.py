"""Integration tests run real celery workers against the committed test database."""
import pytest

from tests.integration.harness import Cluster


@pytest.fixture
def cluster_env():
    """Extra environment for the cluster's processes (tests add connector settings here)."""
    return {}


@pytest.fixture
def cluster(transactional_db, cluster_env, request):
    with Cluster(**cluster_env) as running:
        yield running
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print(running.logs())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
