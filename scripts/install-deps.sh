#!/bin/sh
# Install the Debian packages needed to build the addon and run the compositor tests.
# Idempotent: does nothing (and prints nothing) when everything is already installed.
set -eu

PACKAGES="weston sway grim ffmpeg dbus-daemon libwayland-dev libwayland-bin wayland-protocols pkg-config g++ make python3 util-linux \
  qemu-system-x86 qemu-system-gui linux-source-6.1 flex bison bc patch libelf-dev libssl-dev cpio xz-utils \
  libdrm-dev libgbm-dev libegl-dev libgles-dev libegl-mesa0 libgl1-mesa-dri"

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
