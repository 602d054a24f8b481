#!/usr/bin/env bash
# Build (or find cached) the lab kernel: Debian's linux-source-6.1 + lab/kernel-patches/*.patch +
# lab/kernel.config on tinyconfig.
# Prints the bzImage path on stdout. The cache lives outside the clone, keyed by fragment + source version,
# so a machine builds it once (~7 min on 2 cores).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src_tar=/usr/src/linux-source-6.1.tar.xz
[ -r "$src_tar" ] || { echo "build-kernel: $src_tar missing (apt-get install linux-source-6.1)" >&2; exit 1; }
src_version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
key=$( { cat "$here/kernel.config" "$here"/kernel-patches/*.patch; echo "$src_version"; } | sha256sum | cut -c1-16)
cache=${WLSCANOUT_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wlscanout-lab}
out="$cache/kernel-$key/bzImage"
if [ -s "$out" ]; then echo "$out"; exit 0; fi

# One build per key at a time: a second caller waits for the first one's result instead of wiping its tree.
mkdir -p "$cache"
exec 9>"$cache/build-$key.lock"
flock 9
if [ -s "$out" ]; then echo "$out"; exit 0; fi

work="$cache/build-$key"
rm -rf "$work" && mkdir -p "$work"
echo "build-kernel: building lab kernel $key from linux-source $src_version (about 7 minutes)" >&2
tar -xf "$src_tar" -C "$work"
cd "$work"/linux-source-6.1
for patch in "$here"/kernel-patches/*.patch; do
  patch -p1 -s <"$patch" || { echo "build-kernel: $patch does not apply" >&2; exit 1; }
done
{
  make -s tinyconfig
  scripts/kconfig/merge_config.sh -m .config "$here/kernel.config"
  make -s olddefconfig
  make -s -j"$(nproc)" bzImage
} >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; echo "build-kernel: failed, log in $work/build.log" >&2; exit 1; }
# Every fragment option must have survived olddefconfig, or the lab would silently lack a feature.
missing=$(grep '^CONFIG_' "$here/kernel.config" | while read -r line; do grep -qx "$line" .config || echo "$line"; done)
[ -z "$missing" ] || { echo "build-kernel: options dropped by kconfig: $missing" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
cp arch/x86/boot/bzImage "$out.tmp" && mv "$out.tmp" "$out"
cd / && rm -rf "$work"
echo "$out"
