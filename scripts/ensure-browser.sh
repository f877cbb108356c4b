#!/usr/bin/env bash
# The dashboard's end-to-end tests (tests/e2e) drive Debian's Chromium headless through the
# Python playwright package, which never downloads a browser of its own. Install the distro's
# Chromium when it is missing (as root, or with sudo); tests/e2e fail under CI=true without it
# and skip otherwise.
set -u
BROWSER=${REGLAB_CHROMIUM:-/usr/bin/chromium}
[ -x "$BROWSER" ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "ensure-browser: $BROWSER is missing and there is no apt-get here" >&2
  exit 0
fi
as_root=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then as_root="sudo -n"; else
    echo "ensure-browser: $BROWSER is missing; run as root: apt-get install -y chromium chromium-driver" >&2
    exit 0
  fi
fi
echo "installing chromium (apt-get)"
$as_root apt-get update -q && DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -q chromium chromium-driver || {
  echo "ensure-browser: could not install chromium" >&2
  exit 0
}
