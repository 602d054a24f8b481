#!/bin/sh
# PID 1 of the lab VM: the host root is mounted read-only over 9p; make the writable and virtual filesystems a
# test needs, run the command the host left in /mnt/out/cmd.sh, report its status and power off.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /dev/shm /dev/pts && mount -t tmpfs tmpfs /dev/shm && mount -t devpts devpts /dev/pts
mount -t debugfs debugfs /sys/kernel/debug
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /mnt 2>/dev/null \
  || { echo "wlscanout-lab: cannot mount the 'out' share at /mnt"; reboot -f; }
# The project is shared on its own too, at its own path: a clone under /tmp would be hidden by the tmpfs.
project=$(sed -n 's/.*wlscanout\.project=\([^ ]*\).*/\1/p' /proc/cmdline)
mkdir -p "$project" 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,ro project "$project" \
  || { echo "wlscanout-lab: cannot mount the 'project' share at $project"; reboot -f; }
export HOME=/tmp XDG_RUNTIME_DIR=/run/user/0 WLSCANOUT_IN_LAB=1
mkdir -p -m 0700 $XDG_RUNTIME_DIR
ip link set lo up 2>/dev/null || true
/bin/sh /mnt/cmd.sh
status=$?
printf '\nwlscanout-lab: exit %s\n' "$status"
sync
reboot -f
