#!/usr/bin/env bash
# Runs one command inside the lab VM and exits with its status.
#   lab/boot.sh [--timeout SECONDS] [--out DIR] -- COMMAND [ARGS...]
#   lab/boot.sh --shell            an interactive shell inside (Ctrl-A X quits QEMU)
# The VM: the lab kernel (lab/build-kernel.sh) under QEMU TCG, the host root read-only over 9p, a writable host
# folder at /mnt (--out, default a fresh temporary folder), tmpfs /tmp. COMMAND runs as root in the project
# folder with the caller's CI and WLSCANOUT_* variables. The VM always ends: at exit, or at the timeout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=$(dirname "$here")
timeout=600 out="" shell=0
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) timeout=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --shell) shell=1; shift ;;
    --) shift; break ;;
    *) echo "lab/boot.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ $shell = 1 ] || [ $# -gt 0 ] || { echo "lab/boot.sh: no command given (use -- COMMAND or --shell)" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "lab/boot.sh: qemu-system-x86_64 missing (make deps)" >&2; exit 1; }
kernel=$("$here/build-kernel.sh")
if [ -z "$out" ]; then out=$(mktemp -d /tmp/wlscanout-lab.XXXXXX); fi
mkdir -p "$out"

{
  echo "cd '$project' || exit 1"
  echo "export WLSCANOUT_LAB_KERNEL='$kernel'"  # for tests that boot a guest of their own inside
  env | grep -E '^(CI|WLSCANOUT_[A-Z_]*|LIBGL_[A-Z_]*|MESA_[A-Z_]*)=' | sed "s/'/'\\\\''/g; s/^\([^=]*\)=\(.*\)$/export \1='\2'/" || true
  if [ $shell = 1 ]; then
    echo "echo 'wlscanout lab shell: project at $project, writable /mnt; exit to power off'"
    echo "setsid sh -c 'exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1'"
  else
    printf 'exec'; printf " '%s'" "${@//\'/\'\\\'\'}"; echo
  fi
} > "$out/cmd.sh"

append="console=ttyS0 root=root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=512000,cache=loose ro"
append="$append init=$here/init.sh panic=-1 oops=panic quiet wlscanout.project=$project"
qemu=(qemu-system-x86_64 -m 2048 -smp 2 -nographic -no-reboot -kernel "$kernel" -net none
  -fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap
  -device virtio-9p-pci,fsdev=root,mount_tag=root
  -fsdev local,id=project,path="$project",security_model=none,readonly=on,multidevs=remap
  -device virtio-9p-pci,fsdev=project,mount_tag=project
  -fsdev local,id=out,path="$out",security_model=none,multidevs=remap
  -device virtio-9p-pci,fsdev=out,mount_tag=out
  -append "$append")
if [ $shell = 1 ]; then exec "${qemu[@]}"; fi

# Serial output goes through as it comes; the init's last line carries the command's status.
status_file="$out/.status"
rm -f "$status_file"
set +e
timeout --kill-after=5 "$timeout" "${qemu[@]}" </dev/null | tr -d '\r' | while IFS= read -r line; do
  case "$line" in
    *"wlscanout-lab: exit "*) echo "${line##*wlscanout-lab: exit }" > "$status_file" ;;
  esac
  printf '%s\n' "$line"
done
qemu_status=${PIPESTATUS[0]}
set -e
if [ "$qemu_status" = 124 ] || [ "$qemu_status" = 137 ]; then
  echo "lab/boot.sh: the VM did not finish within ${timeout}s and was killed" >&2
  exit 124
fi
[ -s "$status_file" ] || { echo "lab/boot.sh: the VM ended (QEMU status $qemu_status) without reporting the command's status" >&2; exit 125; }
exit "$(cat "$status_file")"
