#!/bin/sh
# Install the Debian packages needed to build the addon and run the compositor tests.
# Idempotent: does nothing (and prints nothing) when everything is already installed.
set -eu

PACKAGES="weston sway grim libwayland-dev wayland-protocols pkg-config g++ make python3 util-linux libdrm-dev"

missing=""
for p in $PACKAGES; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing$missing"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
