// The generic libwayland binding against a real compositor: globals, roundtrips, errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWeston, type Compositor } from '../src/embedded/compositors.js';
import { Connection, type ConnectionError } from '../src/wayland/connection.js';
import { WlShm, WlCompositor, WlShmError } from '../src/wayland/protocols/index.js';
import { memfdCreate, ftruncate, close, openFdCount } from '../src/native/fds.js';
import type { Proxy, ProxyClass } from '../src/wayland/proxy.js';

describe('libwayland binding', () => {
  let weston: Compositor;
  beforeAll(async () => { weston = await startWeston({ width: 320, height: 240 }); }, 30_000);
  afterAll(async () => { await weston?.stop(); });

  it('lists globals and binds them with typed requests and events', async () => {
    const connection = new Connection(weston.socket);
    const globals: Record<string, number> = {};
    const registry = connection.display.getRegistry();
    registry.on({ global: (name, iface, version) => { globals[iface] = version; } });
    await connection.roundtrip();
    expect(globals.wl_compositor).toBe(4);
    expect(globals.weston_screenshooter).toBe(1);
    const shm = registry.bind(Object.keys(globals).indexOf('wl_shm') >= 0 ? await nameOf(connection, 'wl_shm') : 0, WlShm, 1);
    const formats: number[] = [];
    shm.on({ format: (f) => formats.push(f) });
    await connection.roundtrip();
    expect(formats).toContain(0x36314752); // RGB565
    expect(shm.toString()).toMatch(/^wl_shm#\d+$/);
    connection.close();
  });

  it('refuses a request the bound version does not have', async () => {
    const connection = new Connection(weston.socket);
    const compositor = registryBind(connection, 'wl_compositor', WlCompositor, 1);
    const surface = (await compositor).createSurface();
    expect(() => surface.damageBuffer(0, 0, 1, 1)).toThrow('wl_surface.damage_buffer needs version 4, object has version 1');
    connection.close();
  });

  it('reports a protocol error with interface, id and code, once', async () => {
    const connection = new Connection(weston.socket);
    const errors: ConnectionError[] = [];
    connection.on('error', (e) => errors.push(e));
    const shm = await registryBind(connection, 'wl_shm', WlShm, 1);
    const fd = memfdCreate('t', true);
    ftruncate(fd, 4096);
    shm.createPool(fd, -1); // a negative size is a protocol error
    close(fd);
    await expect(connection.roundtrip()).rejects.toThrow(/Wayland protocol error on wl_shm#\d+: error code 1 \(wl_shm@\d+: error 1: invalid size \(-1\)\)/);
    expect(errors).toHaveLength(1);
    expect(errors[0].protocolError).toMatchObject({ interface: 'wl_shm', code: WlShmError.invalid_stride });
    expect(() => shm.createPool(0, 1)).toThrow(/protocol error/);
    connection.close();
  });

  it('names the display it could not connect to', () => {
    const before = openFdCount();
    expect(() => new Connection('/nonexistent/wayland-9')).toThrow("cannot connect to Wayland display '/nonexistent/wayland-9'");
    expect(openFdCount()).toBe(before);
  });

  it('checks fds before libwayland would abort on them', async () => {
    const connection = new Connection(weston.socket);
    const shm = await registryBind(connection, 'wl_shm', WlShm, 1);
    expect(() => shm.createPool(9999, 4096)).toThrow(/wl_shm\.create_pool \(fd 9999\) failed: EBADF/);
    await connection.roundtrip(); // the connection is still fine
    connection.close();
  });
});

async function nameOf(connection: Connection, iface: string): Promise<number> {
  let found = -1;
  const registry = connection.display.getRegistry();
  registry.on({ global: (name, i) => { if (i === iface) found = name; } });
  await connection.roundtrip();
  return found;
}

async function registryBind<T extends Proxy>(connection: Connection, iface: string, cls: ProxyClass<T>,
  version: number): Promise<T> {
  const registry = connection.display.getRegistry();
  let name = -1;
  registry.on({ global: (n, i) => { if (i === iface) name = n; } });
  await connection.roundtrip();
  return registry.bind(name, cls, version);
}
