// The whole surface of the native addon (native/build/Release/wlscanout.node), typed in one place.
// Each part of native/src/ has one TypeScript module over it in src/native/.

/** Errors thrown by the addon carry the failing call and errno, like Node's system errors. */
export interface NativeErrnoError extends Error {
  code: string; // e.g. "EBADF"
  errno: number; // negative errno, as in Node
  syscall: string; // e.g. "mmap"
}

export interface NativeStat {
  size: number;
  mode: number; // st_mode, including the S_IFMT type bits
  dev: number;
  ino: number;
}

export interface NativeRecv {
  data: Buffer; // empty when the peer closed the socket (EOF)
  fds: number[]; // received with MSG_CMSG_CLOEXEC; the caller owns them
}

export interface NativeFdWatcher {
  /** (Re)starts watching; events is a mask of constants.POLL_*. */
  start(events: number): void;
  stop(): void;
  /** Stops and releases the libuv handle; the fd itself is not closed. Idempotent. */
  close(): void;
}

export interface MessageDescriptor {
  name: string;
  /** libwayland signature: optional since-version digits, then i u f s o n a h, '?' before a nullable one. */
  signature: string;
  /** One entry per argument: interface name for typed o/n arguments, null otherwise. */
  types: (string | null)[];
}

export interface InterfaceDescriptor {
  name: string;
  version: number;
  requests: MessageDescriptor[];
  events: MessageDescriptor[];
}

/** Argument values as passed to/from libwayland: i/u -> number, f -> number (converted to/from wl_fixed),
 *  s -> string | null, o -> proxy handle (0 = null), n -> (request) null placeholder / (event) new handle,
 *  a -> Uint8Array (event: Buffer copy), h -> fd (events: the receiver owns it). */
export type WireValue = number | string | null | Uint8Array;

export interface NativeWlConnection {
  readonly fd: number;
  /** Handle of the wl_display proxy (always 1). */
  readonly displayHandle: number;
  /** Marshals request `opcode` on proxy `handle`. With newInterface set, returns the new proxy's handle. */
  marshal(handle: number, opcode: number, args: WireValue[], newInterface: string | null, newVersion: number,
    destroy: boolean): number;
  destroyProxy(handle: number): void;
  version(handle: number): number;
  id(handle: number): number;
  /** Sends buffered requests; false when the socket is full (the rest goes when it becomes writable). */
  flush(): boolean;
  /** Stops watching, destroys remaining proxies and closes the connection. Idempotent. */
  disconnect(): void;
}

export interface NativeWlConnectionConstructor {
  /** Connects to `name` (null: $WAYLAND_DISPLAY; an absolute path is used as is) and starts dispatching on
   *  the libuv loop. onEvent runs for each event of a proxy that has a handle; onError once, when the
   *  connection fails (protocol error, hang-up); after it no more events arrive. */
  new (name: string | null,
    onEvent: (handle: number, opcode: number, args: WireValue[]) => void,
    onError: (error: Error & { protocolError?: { interface: string; id: number; code: number } }) => void,
  ): NativeWlConnection;
}

export interface UdmabufEntry {
  memfd: number;
  offset: number; // page-aligned
  size: number; // page-aligned
}

export interface SyncFenceInfo {
  objName: string; // the timeline's name
  driverName: string; // e.g. "sw_sync", "drm_sched"
  status: number; // 1 signalled, 0 active, < 0 error
  timestampNs: bigint; // CLOCK_MONOTONIC signal time, 0 while active
}

export interface SyncFileInfo {
  name: string;
  status: number; // 1 all signalled, 0 active, < 0 error
  fences: SyncFenceInfo[];
}

export interface NativeAddon {
  constants: {
    F_SEAL_SEAL: number; F_SEAL_SHRINK: number; F_SEAL_GROW: number; F_SEAL_WRITE: number;
    F_SEAL_FUTURE_WRITE: number;
    POLL_READABLE: number; POLL_WRITABLE: number; POLL_DISCONNECT: number;
    PAGE_SIZE: number;
  };
  // fds.cc
  memfdCreate(name: string, allowSealing: boolean): number;
  ftruncate(fd: number, size: number): void;
  addSeals(fd: number, seals: number): void;
  /** F_GET_SEALS; throws EINVAL for an fd that is not a memfd/shmem file. */
  getSeals(fd: number): number;
  fstat(fd: number): NativeStat;
  /** Maps [offset, offset+length) of fd; offset need not be page-aligned (the mapping is widened). */
  mmap(fd: number, offset: number, length: number, writable: boolean): ArrayBuffer;
  /** Unmaps a buffer returned by mmap now and detaches it. Idempotent. */
  munmap(buffer: ArrayBuffer): void;
  socketpair(): [number, number];
  sendmsg(fd: number, data: Uint8Array, fds: number[]): number;
  /** null when the socket would block (EAGAIN). */
  recvmsg(fd: number, maxBytes: number, maxFds: number): NativeRecv | null;
  pwrite(fd: number, data: Uint8Array, offset: number): number;
  pread(fd: number, length: number, offset: number): Buffer;
  dup(fd: number): number;
  close(fd: number): void;
  // fd_watcher.cc
  FdWatcher: new (fd: number, callback: (status: number, events: number) => void) => NativeFdWatcher;
  // clock.cc
  /** clock_gettime(clockId) in ns. */
  clockNow(clockId: number): bigint;
  // dmabuf.cc
  dmabufConstants: {
    DMA_BUF_SYNC_READ: number; DMA_BUF_SYNC_WRITE: number; DMA_BUF_SYNC_RW: number;
    DMA_BUF_SYNC_START: number; DMA_BUF_SYNC_END: number;
  };
  /** UDMABUF_CREATE on /dev/udmabuf: a dmabuf over one range of a memfd sealed with F_SEAL_SHRINK. */
  udmabufCreate(memfd: number, offset: number, size: number): number;
  /** UDMABUF_CREATE_LIST: one dmabuf over several ranges, in order. */
  udmabufCreateList(entries: UdmabufEntry[]): number;
  dmabufSync(fd: number, flags: number): void;
  dmabufExportSyncFile(fd: number, flags: number): number;
  dmabufImportSyncFile(fd: number, flags: number, syncFd: number): void;
  // sync_file.cc
  syncMerge(name: string, fd1: number, fd2: number): number;
  syncFileInfo(fd: number): SyncFileInfo;
  swSyncCreateFence(timelineFd: number, value: number, name: string): number;
  swSyncInc(timelineFd: number, count: number): void;
  // wayland.cc
  wlDefineInterfaces(interfaces: InterfaceDescriptor[]): void;
  WlConnection: NativeWlConnectionConstructor;
}
