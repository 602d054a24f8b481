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

/** DRM_IOCTL_VERSION of a DRM device fd. */
export interface DrmVersion {
  name: string; // driver name, e.g. "i915", "virtio_gpu", "vgem"
  date: string;
  desc: string;
  major: number;
  minor: number;
  patch: number;
}

/** The display extensions eglProbe() reports individually (in `features`). */
export type EglFeature =
  | 'EGL_EXT_image_dma_buf_import'
  | 'EGL_EXT_image_dma_buf_import_modifiers'
  | 'EGL_MESA_image_dma_buf_export'
  | 'EGL_ANDROID_native_fence_sync'
  | 'EGL_KHR_fence_sync'
  | 'EGL_KHR_wait_sync';

/** An EGL device (EGL_EXT_device_query). The DRM node names are null when the device has none (e.g. Mesa's
 *  software device, EGL_MESA_device_software) or does not support EGL_EXT_device_drm[_render_node]. */
export interface EglDeviceInfo {
  extensions: string[];
  drmDeviceFile: string | null; // EGL_DRM_DEVICE_FILE_EXT, e.g. "/dev/dri/card0"
  drmRenderNodeFile: string | null; // EGL_DRM_RENDER_NODE_FILE_EXT, e.g. "/dev/dri/renderD128"
}

export interface EglDmaBufModifier {
  modifier: bigint; // DRM format modifier (DRM_FORMAT_MOD_LINEAR = 0n)
  externalOnly: boolean; // importable only as GL_TEXTURE_EXTERNAL_OES
}

export interface EglDmaBufFormat {
  fourcc: number; // DRM fourcc
  name: string; // its four characters, e.g. "XR24"
  /** Explicit modifiers; empty when the driver supports this format with implicit modifiers only. */
  modifiers: EglDmaBufModifier[];
  modifiersError?: string; // eglQueryDmaBufModifiersEXT failed for this format (modifiers is then empty)
}

export interface EglDisplayBase {
  platform: 'surfaceless' | 'device';
  /** platform 'device': index in eglQueryDevicesEXT's list, and what the device says about itself. */
  deviceIndex?: number;
  device?: EglDeviceInfo;
}

/** A display that could not be used: error says why, e.g. "eglInitialize failed: EGL_NOT_INITIALIZED". */
export interface EglDisplayFailure extends EglDisplayBase {
  error: string;
}

/** An initialized (and terminated again) display. */
export interface EglDisplayInfo extends EglDisplayBase {
  error?: undefined;
  vendor: string | null; // EGL_VENDOR, e.g. "Mesa Project"
  version: string | null; // EGL_VERSION, e.g. "1.5"
  eglMajor: number; // from eglInitialize
  eglMinor: number;
  clientApis: string | null; // EGL_CLIENT_APIS, e.g. "OpenGL OpenGL_ES "
  extensions: string[]; // EGL_EXTENSIONS, split
  driver: string | null; // EGL_MESA_query_driver: "swrast", "kms_swrast", "iris", ...
  displayDevice: EglDeviceInfo | null; // the device the display runs on (EGL_DEVICE_EXT), when reported
  features: Record<EglFeature, boolean>; // each: the name is in `extensions`
  /** With EGL_EXT_image_dma_buf_import_modifiers only: eglQueryDmaBufFormatsEXT and per-format modifiers. */
  dmabufFormats?: EglDmaBufFormat[];
  dmabufFormatsError?: string;
  terminateError?: string;
}

export type EglDisplayProbe = EglDisplayInfo | EglDisplayFailure;

export interface EglProbeResult {
  /** "libEGL.so.1" when it loaded; null with `error` ("libEGL not found: ...") when it did not. */
  library: string | null;
  error?: string;
  /** eglQueryString(EGL_NO_DISPLAY, EGL_EXTENSIONS), split. */
  clientExtensions: string[];
  devicesError?: string; // eglQueryDevicesEXT failed
  /** The surfaceless display first (always present when libEGL loaded), then one entry per EGL device. */
  displays: EglDisplayProbe[];
}

/** One plane of a dma-buf: the fd (borrowed when importing, owned by the caller when allocated), byte offset, stride. */
export interface DmabufPlane {
  fd: number;
  offset: number;
  stride: number;
}

/** A dma-buf image: size, DRM fourcc, DRM format modifier (DRM_FORMAT_MOD_LINEAR = 0n; DRM_FORMAT_MOD_INVALID
 *  0xffffffffffffffn = implicit) and 1-4 planes. */
export interface DmabufDescription {
  width: number;
  height: number;
  fourcc: number;
  modifier: bigint;
  planes: DmabufPlane[];
}

/** What a GpuBlitter runs on. */
export interface GpuBlitterInfo {
  device: string | null; // the DRM node, e.g. "/dev/dri/renderD128"
  driver: string; // EGL_MESA_query_driver's name ("kms_swrast", "iris", ...), else GL_RENDERER
  nativeFenceSync: boolean; // EGL_ANDROID_native_fence_sync: blit() returns sync_file fds
  importModifiers: boolean; // EGL_EXT_image_dma_buf_import_modifiers
  gbm: boolean; // a GBM device is open on the node: allocate() can work
  platform: 'gbm' | 'device'; // the EGL platform the display came from (EGL_PLATFORM_GBM_KHR / _DEVICE_EXT)
}

/** native/src/gpu_blit.cc's blitter: images are numeric ids (> 0), valid until destroyImage/close. */
export interface NativeGpuBlitter {
  readonly info: GpuBlitterInfo;
  /** eglCreateImageKHR(EGL_LINUX_DMA_BUF_EXT); the fds are borrowed. Throws "eglCreateImageKHR failed: EGL_... for
   *  WxH FOURCC modifier 0x..". */
  importDmabuf(width: number, height: number, fourcc: number, modifier: bigint, planes: DmabufPlane[]): number;
  /** A GL texture from 32-bit RGB bytes (XR24/AR24/XB24/AB24) starting at the first pixel. */
  upload(bytes: Uint8Array, width: number, height: number, stride: number, fourcc: number): number;
  /** rects: x, y, width, height per rect in source coordinates (clipped), null = all. Returns a sync_file fd (the
   *  caller owns it) or -1 after glFinish. */
  blit(src: number, dst: number, yFlip: boolean, rects: number[] | null): number;
  /** gbm_bo_create_with_modifiers (modifiers given; if that is ENOSYS and LINEAR is listed, a linear buffer) or
   *  gbm_bo_create(RENDERING | LINEAR); plane fds are the caller's. */
  allocate(width: number, height: number, fourcc: number, modifiers: bigint[] | null): { modifier: bigint; planes: DmabufPlane[] };
  /** Idempotent. */
  destroyImage(image: number): void;
  /** Destroys every image, the context and display, closes the node. Idempotent. */
  close(): void;
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
  /** A connected non-blocking AF_UNIX stream socket to `path` (abstract: Linux's abstract namespace). */
  unixConnect(path: string, abstract: boolean): number;
  sendmsg(fd: number, data: Uint8Array, fds: number[]): number;
  /** null when the socket would block (EAGAIN). */
  recvmsg(fd: number, maxBytes: number, maxFds: number): NativeRecv | null;
  /** As recvmsg, into target's memory: bytes received (0 at EOF), null when it would block. */
  recvmsgInto(fd: number, target: Uint8Array, maxFds: number): { bytes: number; fds: number[] } | null;
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
  // drm.cc
  /** DRM_IOCTL_VERSION; throws a NativeErrnoError with syscall "ioctl" (ENOTTY/EINVAL) for a non-DRM fd. */
  drmVersion(fd: number): DrmVersion;
  // egl.cc
  /** Loads libEGL.so.1 on first use; never throws for anything missing, reports it as data. Synchronous. */
  eglProbe(): EglProbeResult;
  // gpu_blit.cc
  /** Opens libEGL/libGLESv2/libgbm (dlopen, first use), a GLES2 context on the DRM node at devicePath (GBM platform,
   *  else EGL device platform). Throws an Error "GpuBlitter on PATH: <reason>" when it cannot. */
  GpuBlitter: new (devicePath: string) => NativeGpuBlitter;
  // pixel_copy.cc
  /** CPU blit of rects (x, y, w, h quads in source coordinates; null: all) between 32-bit RGB formats (or the
   *  same format), optionally flipping rows; src/dst start at the first pixel. Returns bytes written. */
  copyPixels(src: Uint8Array, srcStride: number, srcFourcc: number, dst: Uint8Array, dstStride: number, dstFourcc: number,
    width: number, height: number, rects: Int32Array | null, yFlip: boolean): number;
  // wayland.cc
  wlDefineInterfaces(interfaces: InterfaceDescriptor[]): void;
  WlConnection: NativeWlConnectionConstructor;
}
