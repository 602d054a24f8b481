// The objects a D-Bus connection serves: method calls dispatched to handlers (typed arguments, Promise
// replies), plus the standard Properties (read-only), Peer and Introspectable interfaces.
import { readFileSync } from 'node:fs';
import { log } from '../../../log.js';
import { DBusError, ErrorNames } from './errors.js';
import { closeFds, closeUnreferenced } from './fds.js';
import type { Message } from './message.js';
import { Variant, isObjectPath, type DBusValue } from './values.js';
import { signatureTypes } from './wire.js';

export interface MethodSpec {
  /** Argument signature; a call with other arguments gets an InvalidArgs error reply. */
  in: string;
  /** Reply signature (default: none). */
  out?: string;
  /**
   * Returns the reply: its single value, an array of values when `out` has several, nothing when it has none;
   * or a Promise of that, and the reply goes when it resolves. A thrown DBusError becomes that error reply.
   * 'h' arguments are fds that belong to the handler from now on.
   */
  handler(args: DBusValue[], message: Message): unknown;
  /**
   * The handler is done with its 'ay' arguments when it returns (it copies what it keeps): they are views of the
   * connection's receive buffer, which is then reused for the next large message instead of a fresh allocation
   * (a fresh multi-megabyte buffer costs a page fault per 4 KiB on every frame).
   */
  borrowsBytes?: boolean;
}

export interface PropertySpec {
  signature: string;
  get(): DBusValue;
}

export interface InterfaceSpec {
  methods?: Record<string, MethodSpec>;
  properties?: Record<string, PropertySpec>;
}

/** How a call is answered (the connection drops answers the caller did not want or that come too late). */
export interface Answer {
  reply(signature: string, body: DBusValue[]): void;
  error(errorName: string, text: string): void;
}

const PEER = 'org.freedesktop.DBus.Peer';
const PROPERTIES = 'org.freedesktop.DBus.Properties';
const INTROSPECTABLE = 'org.freedesktop.DBus.Introspectable';

export class ObjectTable {
  private readonly objects = new Map<string, Map<string, InterfaceSpec>>();

  /** Serves `iface` at `path`; returns a function that withdraws it. */
  add(path: string, iface: string, spec: InterfaceSpec): () => void {
    if (!isObjectPath(path)) throw new TypeError(`'${path}' is not a D-Bus object path`);
    for (const [member, method] of Object.entries(spec.methods ?? {})) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(member)) throw new TypeError(`'${member}' is not a D-Bus member name`);
      signatureTypes(method.in);
      signatureTypes(method.out ?? '');
    }
    let interfaces = this.objects.get(path);
    if (!interfaces) this.objects.set(path, (interfaces = new Map()));
    interfaces.set(iface, spec);
    return () => {
      if (interfaces.get(iface) !== spec) return;
      interfaces.delete(iface);
      if (interfaces.size === 0) this.objects.delete(path);
    };
  }

  /**
   * Answers a method call, at once or when its handler's Promise settles. Returns whether the call's byte arrays
   * are free to be overwritten now (no handler got them, or it borrowed them).
   */
  dispatch(call: Message, answer: Answer): boolean {
    const fail = (e: unknown): void => (e instanceof DBusError ? answer.error(e.errorName, e.message)
      : answer.error(ErrorNames.failed, e instanceof Error ? e.message : String(e)));
    const builtin = this.builtin(call);
    if (builtin) {
      closeFds(call.fds);
      try {
        answer.reply(...builtin());
      } catch (e) {
        fail(e);
      }
      return true;
    }
    const target = this.findMethod(call);
    if (target instanceof DBusError) {
      closeFds(call.fds);
      fail(target);
      return true;
    }
    const { method, outCount } = target;
    if (call.signature !== method.in) {
      closeFds(call.fds);
      answer.error(ErrorNames.invalidArgs, `${call.member} takes (${method.in}), got (${call.signature})`);
      return true;
    }
    closeUnreferenced(call);
    const send = (value: unknown): void => {
      try {
        answer.reply(method.out ?? '', outCount === 0 ? [] : outCount === 1 ? [value as DBusValue] : (value as DBusValue[]));
      } catch (e) {
        log.warn({ member: call.member, err: (e as Error).message }, 'D-Bus method handler returned a value that does not fit its out signature');
        fail(e);
      }
    };
    let result: unknown;
    try {
      result = method.handler(call.body, call);
    } catch (e) {
      fail(e);
      return method.borrowsBytes === true;
    }
    if (result instanceof Promise) result.then(send, fail);
    else send(result);
    return method.borrowsBytes === true;
  }

  private findMethod(call: Message): { method: MethodSpec; outCount: number } | DBusError {
    const interfaces = this.objects.get(call.path!);
    if (!interfaces) return new DBusError(ErrorNames.unknownObject, `no object at ${call.path}`);
    const candidates = call.interface ? [interfaces.get(call.interface)] : [...interfaces.values()];
    if (call.interface && !candidates[0]) return new DBusError(ErrorNames.unknownInterface, `${call.path} has no interface ${call.interface}`);
    for (const spec of candidates) {
      const method = spec?.methods?.[call.member!];
      if (method) return { method, outCount: signatureTypes(method.out ?? '').length };
    }
    const name = call.interface ? `${call.interface}.${call.member}` : call.member;
    return new DBusError(ErrorNames.unknownMethod, `${call.path} has no method ${name}`);
  }

  /** Peer, Introspectable and Properties: the maker of the reply's [signature, body], or null for other calls. */
  private builtin(call: Message): (() => [string, DBusValue[]]) | null {
    const { interface: iface, member, body } = call;
    if (iface === PEER && member === 'Ping' && call.signature === '') return () => ['', []];
    if (iface === PEER && member === 'GetMachineId') return () => ['s', [machineId()]];
    if (iface === INTROSPECTABLE && member === 'Introspect') return () => ['s', [this.introspect(call.path!)]];
    if (iface !== PROPERTIES) return null;
    return () => {
      const expected = ({ Get: 'ss', GetAll: 's', Set: 'ssv' } as Record<string, string>)[member!];
      if (!expected) throw new DBusError(ErrorNames.unknownMethod, `${PROPERTIES} has no method ${member}`);
      if (call.signature !== expected) throw new DBusError(ErrorNames.invalidArgs, `${member} takes (${expected}), got (${call.signature})`);
      const interfaces = this.objects.get(call.path!);
      if (!interfaces) throw new DBusError(ErrorNames.unknownObject, `no object at ${call.path}`);
      const spec = interfaces.get(body[0] as string);
      if (!spec) throw new DBusError(ErrorNames.unknownInterface, `${call.path} has no interface ${body[0]}`);
      const properties = spec.properties ?? {};
      if (member === 'GetAll') {
        return ['a{sv}', [new Map(Object.entries(properties).map(([name, p]) => [name, new Variant(p.signature, p.get())]))]];
      }
      const property = properties[body[1] as string];
      if (!property) throw new DBusError(ErrorNames.unknownProperty, `${body[0]} has no property ${body[1]}`);
      if (member === 'Set') throw new DBusError(ErrorNames.propertyReadOnly, `${body[0]}.${body[1]} is read-only`);
      return ['v', [new Variant(property.signature, property.get())]];
    };
  }

  private introspect(path: string): string {
    const lines = ['<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"',
      ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">', '<node>'];
    for (const [name, spec] of this.objects.get(path) ?? []) {
      lines.push(`  <interface name="${name}">`);
      for (const [member, method] of Object.entries(spec.methods ?? {})) {
        const args = [...signatureTypes(method.in).map((t) => `<arg type="${t}" direction="in"/>`),
          ...signatureTypes(method.out ?? '').map((t) => `<arg type="${t}" direction="out"/>`)];
        lines.push(`    <method name="${member}">${args.join('')}</method>`);
      }
      for (const [prop, p] of Object.entries(spec.properties ?? {})) lines.push(`    <property name="${prop}" type="${p.signature}" access="read"/>`);
      lines.push('  </interface>');
    }
    const prefix = path === '/' ? '/' : path + '/';
    const children = new Set([...this.objects.keys()].filter((p) => p.startsWith(prefix)).map((p) => p.slice(prefix.length).split('/')[0]));
    for (const child of children) lines.push(`  <node name="${child}"/>`);
    lines.push('</node>');
    return lines.join('\n');
  }
}

let cachedMachineId: string | null = null;
function machineId(): string {
  if (cachedMachineId === null) {
    try {
      cachedMachineId = readFileSync('/etc/machine-id', 'utf8').trim();
    } catch {
      cachedMachineId = '';
    }
  }
  if (!cachedMachineId) throw new DBusError(ErrorNames.failed, 'no /etc/machine-id');
  return cachedMachineId;
}
