#!/usr/bin/env bash
# The admin console's browser test drives Debian's chromium through Playwright; install it if missing.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || [ -n "${REVPLAN_CHROMIUM:-}" ]; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "chromium is missing: installing Debian's package for the browser test"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; }
  exit 0
fi
echo "chromium is not installed: install it (apt-get install chromium) or set REVPLAN_CHROMIUM to a chromium binary" >&2
exit 1
