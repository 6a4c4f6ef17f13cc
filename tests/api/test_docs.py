"""/api/docs/ works offline: Swagger UI comes from the app's own static files (drf-spectacular-sidecar).

The files are collected as a deployment does (collectstatic, then WhiteNoise serves STATIC_ROOT), so the
test sees what a browser on a machine without internet would get.
"""
import json
import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.test import Client

DOCS_URL = "/api/docs/"
# Anything that looks like an absolute or protocol-relative address, in markup or inline script.
ANY_URL = re.compile(r"""(?:[a-z][a-z0-9+.-]*:)?//[^\s"'<>)`]+""", re.IGNORECASE)


class ReferenceCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.references: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.references += [value for name, value in attrs if name in {"src", "href"} and value]


@pytest.fixture
def collected_static(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", "--noinput", verbosity=0)


def fetch(client: Client, url: str) -> tuple[int, bytes]:
    response = client.get(url)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, body


@pytest.mark.usefixtures("collected_static")
def test_docs_page_references_no_other_host_and_its_files_are_served(db):
    # given: a client made after the files were collected (WhiteNoise reads STATIC_ROOT when it starts)
    client = Client()
    # when
    status, body = fetch(client, DOCS_URL)
    # then
    assert status == 200
    html = body.decode()
    collector = ReferenceCollector()
    collector.feed(html)
    assert collector.references, "the page should load Swagger UI's script and style"
    for reference in collector.references + ANY_URL.findall(html):
        parts = urlsplit(reference)
        assert parts.netloc in {"", "testserver"}, reference
        assert parts.scheme in {"", "http", "https"}, reference
    local_files = [urlsplit(reference).path for reference in collector.references]
    assert any(path.endswith("swagger-ui-bundle.js") for path in local_files)
    assert any(path.endswith("swagger-ui.css") for path in local_files)
    for path in local_files:
        file_status, content = fetch(client, path)
        assert (file_status, bool(content)) == (200, True), path


def test_docs_page_turns_off_the_online_validator(db):
    # Swagger UI's default validatorUrl is validator.swagger.io: every browser would send it the schema's address.
    html = Client().get(DOCS_URL).content.decode()
    settings_json = re.search(r"const swaggerSettings = (\{.*?\});", html, re.DOTALL).group(1)
    assert json.loads(settings_json)["validatorUrl"] is None


def test_docs_page_loads_the_schema_from_this_site(db):
    html = Client().get(DOCS_URL).content.decode()
    assert '"/api/schema/"' in html
    assert Client().get("/api/schema/").status_code == 200
