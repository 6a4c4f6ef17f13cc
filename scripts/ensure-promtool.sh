#!/usr/bin/env bash
# The alert rules' unit tests (deploy/prometheus/alerts_test.yml) run `promtool test rules`; Debian's
# prometheus package provides promtool: install it if missing, as scripts/ensure-chromium.sh does chromium.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 || [ -n "${REVPLAN_PROMTOOL:-}" ]; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "promtool is missing: installing Debian's prometheus package for the alert rules' tests"
  # --no-install-recommends: promtool (and the server binary it ships with), not the exporters it recommends.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
  exit 0
fi
echo "promtool is not installed: install it (apt-get install prometheus) or set REVPLAN_PROMTOOL to a promtool binary" >&2
exit 1
