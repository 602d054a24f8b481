#!/bin/sh
# The KMS guest with blob dumb buffers: `-device virtio-gpu-pci,blob=true` needs /dev/udmabuf, which the host
# kernel lacks, so this boots the lab kernel (outer VM, which has udmabuf) and runs the inner QEMU there.
# The inner guest's screendump lands in OUT_DIR (a writable 9p share) and is compared on the host with
# `kms-guest --dump` (the C pattern; test/kms-guest-pattern.test.ts proves it equals the TypeScript one).
#   usage: lab/guest/try-blob-nested.sh BZIMAGE [OUT_DIR]
# The same script is the outer VM's init (PID 1).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
guest=$here/build/kms-guest
frames=2

if [ $$ -ne 1 ]; then
  kernel=$(realpath "$1"); out=$(realpath -m "${2:-/tmp/kms-guest-blob}")
  mkdir -p "$out"; rm -f "$out"/*.ppm "$out"/*.log
  make -s -C "$here"
  start=$(date +%s.%N)
  qemu-system-x86_64 -m 2048 -smp 2 -nographic -no-reboot -kernel "$kernel" \
    -fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=root,mount_tag=root \
    -fsdev local,id=out,path="$out",security_model=none -device virtio-9p-pci,fsdev=out,mount_tag=out \
    -append "console=ttyS0 root=root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=512000 ro init=$here/try-blob-nested.sh panic=-1 quiet kernel=$kernel"
  echo "outer VM ran $(echo "$(date +%s.%N) - $start" | bc) s"
  { grep -c virtio_gpu_cmd_res_create_blob "$out/inner-qemu.log" || true; } | sed 's/^/blob resources created: /'
  for frame in $(seq 0 $frames); do
    "$guest" --dump 1280 800 $frame | python3 -c '
import sys
ppm = open(sys.argv[1], "rb").read().split(b"\n", 3); raw = sys.stdin.buffer.read()
rgb = bytearray(len(raw) // 4 * 3); rgb[0::3], rgb[1::3], rgb[2::3] = raw[2::4], raw[1::4], raw[0::4]
print(f"frame {sys.argv[2]}: screendump {ppm[1].decode()}", "pixel-exact" if ppm[3] == rgb else "DIFFERS")
' "$out/frame-$frame.ppm" $frame
  done
  exit
fi

# --- outer VM, PID 1 ---
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null || true
mount -t tmpfs tmp /tmp; mount -t tmpfs run /run; mkdir -p /dev/shm; mount -t tmpfs shm /dev/shm
mount -t 9p -o trans=virtio,version=9p2000.L out /mnt
kernel=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^kernel=//p')
uptime() { cut -d' ' -f1 /proc/uptime; }
echo "outer: init at $(uptime) s, udmabuf: $(ls /dev/udmabuf)"
mkfifo /tmp/mon.in /tmp/mon.out; cat /tmp/mon.out > /mnt/monitor.log &
qemu-system-x86_64 -m 256 -smp 1 -vga none -net none -no-reboot -kernel "$kernel" \
  -object memory-backend-memfd,id=mem,size=256M,share=on -machine memory-backend=mem \
  -device virtio-gpu-pci,blob=true -display none -serial file:/mnt/inner.log -trace 'virtio_gpu_cmd_res_create_*' \
  -chardev pipe,id=mon,path=/tmp/mon -mon chardev=mon,mode=readline \
  -fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=root,mount_tag=root \
  -append "console=ttyS0 root=root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=512000 ro init=$guest panic=-1 quiet wlscanout.frames=$frames wlscanout.interval_ms=3000" \
  2> /mnt/inner-qemu.log &
echo "outer: inner QEMU started at $(uptime) s"
for frame in $(seq 0 $frames); do
  until grep -q "frame $frame shown\|failed" /mnt/inner.log 2>/dev/null; do
    sleep 0.2; kill -0 $! 2>/dev/null || break
  done
  echo "outer: $(grep "frame $frame shown\|failed" /mnt/inner.log) (seen at $(uptime) s)"
  sleep 0.5; echo "screendump /mnt/frame-$frame.ppm" > /tmp/mon.in
done
sleep 2; echo quit > /tmp/mon.in; wait $! || true
echo "outer: inner QEMU ended; its stderr:"; cat /mnt/inner-qemu.log; sync
reboot -f
