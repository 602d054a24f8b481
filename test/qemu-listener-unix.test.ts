// The listener interfaces of newer QEMUs, driven by a fake QEMU peer (Debian's QEMU 7.2 has neither):
// Unix.Map (9.2+: the surface's memfd, shown as wl_shm with no copy) and Unix.ScanoutDMABUF2 (10.1+: planes and
// a sub-rectangle). Bad calls get D-Bus errors naming what was wrong, and no fd is leaked.
import { EventEmitter } from 'node:events';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { close, fstat, listOpenFds, pwrite } from '../src/native/fds.js';
import { DBusConnection } from '../src/source/qemu/dbus/connection.js';
import type { DBusValue } from '../src/source/qemu/dbus/values.js';
import {
  DisplayListener, LISTENER_PATH, MAP_INTERFACE, DMABUF2_INTERFACE, PixmanFormat, type ListenerEvents,
  type Dmabuf2ScanoutEvent, type MapScanoutEvent,
} from '../src/source/qemu/listener.js';
import { QemuSource } from '../src/source/qemu/qemu-source.js';
import { startWeston, type Compositor } from '../src/embedded/compositors.js';
import { renderExpected } from '../src/source/test-pattern.js';
import { closeListenerPair, connectPair, openListenerPair, type FakePeer } from './dbus-peer.js';
import { memfdOfSize } from './native-helpers.js';
import { openPresenter, sleep, waitFor, XRGB } from './helpers.js';

const XR24 = 0x34325258;

describe('QEMU 9.2+/10.1+ listener interfaces (fake QEMU peer)', () => {
  let baseline: number[];
  let conn: DBusConnection;
  let peer: FakePeer;
  let sink: EventEmitter<ListenerEvents>;
  let listener: DisplayListener;
  beforeEach(async () => {
    ({ baseline, conn, peer, sink, listener } = await openListenerPair(async () => ({ width: 64, height: 32 })));
  });
  afterEach(() => closeListenerPair({ baseline, conn, peer, listener }));
  const callMap = (member: string, signature: string, body: DBusValue[]) => peer.call(LISTENER_PATH, MAP_INTERFACE, member, signature, body);
  const error = async (serial: number): Promise<string> => {
    const reply = await peer.replyTo(serial);
    return `${reply.errorName}: ${reply.body[0]}`;
  };

  it('ScanoutMap hands over the memfd, UpdateMap the damage; updates outside the surface are dropped', async () => {
    const memfd = memfdOfSize(4096 + 256 * 32);
    const got = new Promise<MapScanoutEvent>((r) => sink.once('scanout-map', r));
    const updates: unknown[] = [];
    sink.on('update-map', (e) => updates.push(e));
    await peer.replyTo(await callMap('ScanoutMap', 'huuuuu', [memfd, 4096, 64, 32, 256, PixmanFormat.x8r8g8b8]));
    close(memfd);
    const event = await got;
    expect(event).toMatchObject({ offset: 4096, width: 64, height: 32, stride: 256, pixmanFormat: PixmanFormat.x8r8g8b8 });
    expect(fstat(event.fd).size).toBe(4096 + 256 * 32);
    close(event.fd); // ours to close
    await peer.replyTo(await callMap('UpdateMap', 'iiii', [8, 4, 16, 16]));
    await peer.replyTo(await callMap('UpdateMap', 'iiii', [60, 4, 16, 16])); // beyond x 64: dropped
    expect(updates).toEqual([{ x: 8, y: 4, w: 16, h: 16 }]);
  });

  it('ScanoutMap refusals: a memfd too small for the surface, a short stride, a 16-bit format, a closed fd', async () => {
    const small = memfdOfSize(1000);
    expect(await error(await callMap('ScanoutMap', 'huuuuu', [small, 0, 64, 32, 256, PixmanFormat.x8r8g8b8])))
      .toBe('org.freedesktop.DBus.Error.InvalidArgs: ScanoutMap 64x32: the memfd holds 1000 bytes, the surface needs 8192 from offset 0');
    expect(await error(await callMap('ScanoutMap', 'huuuuu', [small, 0, 64, 32, 200, PixmanFormat.x8r8g8b8])))
      .toBe('org.freedesktop.DBus.Error.InvalidArgs: ScanoutMap 64x32: stride 200 is shorter than a row (256 bytes)');
    expect(await error(await callMap('ScanoutMap', 'huuuuu', [small, 0, 4, 4, 8, 0x10020565])))
      .toBe('org.freedesktop.DBus.Error.InvalidArgs: ScanoutMap 4x4: pixman format 0x10020565 is not a 32-bit format');
    close(small);
    expect(await error(await callMap('UpdateMap', 'iiii', [-1, 0, 4, 4])))
      .toBe('org.freedesktop.DBus.Error.InvalidArgs: UpdateMap 4x4 at -1,0');
  });

  it('ScanoutDMABUF2 hands over every plane with a 64-bit modifier; a plane count that disagrees is refused', async () => {
    const planes = [memfdOfSize(8192), memfdOfSize(8192)];
    const got = new Promise<Dmabuf2ScanoutEvent>((r) => sink.once('scanout-dmabuf2', r));
    const call = (body: DBusValue[]) => peer.call(LISTENER_PATH, DMABUF2_INTERFACE, 'ScanoutDMABUF2', 'ahuuuuauauuuuutb', body);
    await peer.replyTo(await call([planes, 8, 4, 32, 16, [0, 4096], [256, 128], 2, 0x3231564e, 64, 32, 0x0100000000000002n, false]));
    const event = await got;
    expect(event).toMatchObject({ x: 8, y: 4, width: 32, height: 16, offsets: [0, 4096], strides: [256, 128], fourcc: 0x3231564e,
      backingWidth: 64, backingHeight: 32, modifier: 0x0100000000000002n, y0Top: false });
    expect(event.fds.map((fd) => fstat(fd).size)).toEqual([8192, 8192]);
    event.fds.forEach((fd) => close(fd));
    expect(await error(await call([planes, 0, 0, 32, 16, [0], [256, 128], 2, XR24, 64, 32, 0n, false])))
      .toBe('org.freedesktop.DBus.Error.InvalidArgs: ScanoutDMABUF2 32x16: 2 planes but 2 fds, 1 offsets, 2 strides');
    expect(await error(await call([planes.slice(0, 1), 40, 0, 32, 16, [0], [256], 1, XR24, 64, 32, 0n, false])))
      .toBe('org.freedesktop.DBus.Error.InvalidArgs: ScanoutDMABUF2 32x16: rectangle 32x16+40+0 outside the 64x32 backing');
    planes.forEach((fd) => close(fd));
  });
});

describe('Unix.Map through QemuSource to weston: QEMU\'s memfd is the wl_shm pool, nothing copied (fake QEMU 9.2 peer)', () => {
  let weston: Compositor;
  const W = 320;
  const H = 200;
  beforeAll(async () => { weston = await startWeston({ width: W, height: H }); }, 30_000);
  afterAll(async () => { await weston?.stop(); });

  it('shows the mapped surface pixel-exact and follows UpdateMap, with 0 bytes copied', async () => {
    const baseline = listOpenFds();
    const presenter = await openPresenter(weston.socket, { fullscreen: true });
    const { conn, peer } = await connectPair();
    const display = new EventEmitter<ListenerEvents>();
    const listener = new DisplayListener(conn, display, async () => ({ width: W, height: H }));
    const source = new QemuSource(display, presenter);
    const memfd = memfdOfSize(W * H * 4);
    try {
      // QEMU's surface: the built-in pattern, frame 5, as XRGB8888 rows.
      const rgba = renderExpected(W, H, XRGB, 5);
      const pixels = Buffer.alloc(W * H * 4);
      for (let i = 0; i < W * H * 4; i += 4) pixels.set([rgba[i + 2], rgba[i + 1], rgba[i], 0xff], i);
      pwrite(memfd, pixels, 0);
      await peer.replyTo(await peer.call(LISTENER_PATH, MAP_INTERFACE, 'ScanoutMap', 'huuuuu', [memfd, 0, W, H, W * 4, PixmanFormat.x8r8g8b8]));
      const matches = async (expected: Uint8Array): Promise<boolean> => {
        const shot = await weston.capture();
        for (let i = 0; i < W * H * 4; i += 4) {
          if (shot.data[i] !== expected[i] || shot.data[i + 1] !== expected[i + 1] || shot.data[i + 2] !== expected[i + 2]) return false;
        }
        return true;
      };
      await waitFor('the mapped surface on screen', () => presenter.stats.framesCommitted > 0);
      let ok = false;
      for (let attempt = 0; attempt < 20 && !ok; attempt++) ok = await matches(rgba);
      expect(ok, 'weston shows the mapped surface').toBe(true);
      // QEMU paints a red square into its memfd and says where.
      const red = Buffer.alloc(16 * 4);
      for (let i = 0; i < 16; i++) red.set([0, 0, 0xff, 0xff], i * 4);
      for (let y = 20; y < 36; y++) pwrite(memfd, red, (y * W + 40) * 4);
      await peer.replyTo(await peer.call(LISTENER_PATH, MAP_INTERFACE, 'UpdateMap', 'iiii', [40, 20, 16, 16]));
      const expected = Uint8Array.from(rgba);
      for (let y = 20; y < 36; y++) for (let x = 40; x < 56; x++) expected.set([0xff, 0, 0, 0xff], (y * W + x) * 4);
      ok = false;
      for (let attempt = 0; attempt < 20 && !ok; attempt++) ok = await matches(expected);
      expect(ok, 'weston shows the update').toBe(true);
      expect(source.stats).toMatchObject({ mapScanouts: 1, mapUpdates: 1, bytesCopied: 0, refused: 0 });
    } finally {
      close(memfd);
      source.close();
      listener.close();
      conn.close();
      peer.close();
      presenter.close();
    }
    await sleep(50);
    expect(listOpenFds()).toEqual(baseline);
  }, 30_000);
});
