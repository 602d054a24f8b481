/* The floor any client can reach: a fullscreen xdg_toplevel presenting pre-drawn XRGB8888 buffers with
 * libwayland directly (attach, damage_buffer, commit, frame callback, wait for release). The buffers live in one
 * memfd, shown either as wl_shm buffers or (dmabuf) as udmabufs of it through zwp_linux_dmabuf_v1 (linear,
 * params.add + create_immed: the same zero-copy path wlscanout takes for blob resources). Usage:
 *   ref-client WIDTH HEIGHT FRAMES [shm|dmabuf [WARMUP [FLAG...]]]   → one JSON line: frames, seconds, cpu_user_s, cpu_sys_s
 * WARMUP frames (default 0) are shown before the clocks start and are not counted. The FLAGs (dmabuf mode; none by
 * default) add one by one what wlscanout's presenter sends and this floor does not, to find what costs the
 * compositor (bench/README.md, present-cost-dmabuf):
 *   viewport      wp_viewport.set_destination(WIDTH, HEIGHT) with the first buffer
 *   create        params.create (waiting for created) instead of create_immed
 *   presentation  a wp_presentation feedback with every commit
 *   invalid       DRM_FORMAT_MOD_INVALID on the wire instead of LINEAR
 *   feedback      linux-dmabuf v4 and get_surface_feedback on the window's surface
 *   geometry      xdg_surface.set_window_geometry(0, 0, WIDTH, HEIGHT) with the first buffer
 *   decoration    zxdg_toplevel_decoration_v1 server_side, when offered */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <linux/udmabuf.h>
#include <wayland-client.h>
#include "xdg-shell-client-protocol.h"
#include "linux-dmabuf-unstable-v1-client-protocol.h"
#include "viewporter-client-protocol.h"
#include "presentation-time-client-protocol.h"
#include "xdg-decoration-unstable-v1-client-protocol.h"

#define DRM_FORMAT_XRGB8888 0x34325258u /* fourcc 'XR24' */

#define NBUF 3
static struct wl_compositor *compositor;
static struct wl_shm *shm;
static struct xdg_wm_base *wm_base;
static struct zwp_linux_dmabuf_v1 *linux_dmabuf;
static struct wp_viewporter *viewporter;
static struct wp_presentation *presentation;
static struct zxdg_decoration_manager_v1 *decoration_manager;
static int flag_viewport, flag_create, flag_presentation, flag_invalid, flag_feedback, flag_geometry, flag_decoration;
static struct { struct wl_buffer *buffer; int busy; } bufs[NBUF];
static int configured, frame_ready = 1, shown;

static void global(void *d, struct wl_registry *r, uint32_t name, const char *iface, uint32_t v) {
  if (!strcmp(iface, "wl_compositor")) compositor = wl_registry_bind(r, name, &wl_compositor_interface, 4);
  else if (!strcmp(iface, "wl_shm")) shm = wl_registry_bind(r, name, &wl_shm_interface, 1);
  else if (!strcmp(iface, "xdg_wm_base")) wm_base = wl_registry_bind(r, name, &xdg_wm_base_interface, 1);
  else if (!strcmp(iface, "zwp_linux_dmabuf_v1") && v >= 2)
    linux_dmabuf = wl_registry_bind(r, name, &zwp_linux_dmabuf_v1_interface, flag_feedback && v >= 4 ? 4 : v >= 3 ? 3 : 2);
  else if (!strcmp(iface, "wp_viewporter") && flag_viewport) viewporter = wl_registry_bind(r, name, &wp_viewporter_interface, 1);
  else if (!strcmp(iface, "wp_presentation") && flag_presentation) presentation = wl_registry_bind(r, name, &wp_presentation_interface, 1);
  else if (!strcmp(iface, "zxdg_decoration_manager_v1") && flag_decoration) decoration_manager = wl_registry_bind(r, name, &zxdg_decoration_manager_v1_interface, 1);
}
static void global_remove(void *d, struct wl_registry *r, uint32_t n) {}
static const struct wl_registry_listener registry_listener = { global, global_remove };
static void ping(void *d, struct xdg_wm_base *b, uint32_t serial) { xdg_wm_base_pong(b, serial); }
static const struct xdg_wm_base_listener wm_listener = { ping };
static void surface_configure(void *d, struct xdg_surface *s, uint32_t serial) { xdg_surface_ack_configure(s, serial); configured = 1; }
static const struct xdg_surface_listener xdg_surface_listener = { surface_configure };
static void top_configure(void *d, struct xdg_toplevel *t, int32_t w, int32_t h, struct wl_array *s) {}
static void top_close(void *d, struct xdg_toplevel *t) { exit(0); }
static const struct xdg_toplevel_listener top_listener = { .configure = top_configure, .close = top_close };
static void release(void *d, struct wl_buffer *b) { bufs[(long)d].busy = 0; }
static const struct wl_buffer_listener buffer_listener = { release };
static void done(void *d, struct wl_callback *cb, uint32_t t) { wl_callback_destroy(cb); frame_ready = 1; shown++; }
static const struct wl_callback_listener frame_listener = { done };
static void pf_sync_output(void *d, struct wp_presentation_feedback *f, struct wl_output *o) {}
static void pf_presented(void *d, struct wp_presentation_feedback *f, uint32_t a, uint32_t b, uint32_t c, uint32_t e, uint32_t g, uint32_t h, uint32_t i) { wp_presentation_feedback_destroy(f); }
static void pf_discarded(void *d, struct wp_presentation_feedback *f) { wp_presentation_feedback_destroy(f); }
static const struct wp_presentation_feedback_listener pf_listener = { pf_sync_output, pf_presented, pf_discarded };
static void fb_done(void *d, struct zwp_linux_dmabuf_feedback_v1 *f) {}
static void fb_format_table(void *d, struct zwp_linux_dmabuf_feedback_v1 *f, int32_t fd, uint32_t size) { close(fd); }
static void fb_main_device(void *d, struct zwp_linux_dmabuf_feedback_v1 *f, struct wl_array *dev) {}
static void fb_tranche_done(void *d, struct zwp_linux_dmabuf_feedback_v1 *f) {}
static void fb_tranche_target_device(void *d, struct zwp_linux_dmabuf_feedback_v1 *f, struct wl_array *dev) {}
static void fb_tranche_formats(void *d, struct zwp_linux_dmabuf_feedback_v1 *f, struct wl_array *idx) {}
static void fb_tranche_flags(void *d, struct zwp_linux_dmabuf_feedback_v1 *f, uint32_t flags) {}
static const struct zwp_linux_dmabuf_feedback_v1_listener fb_listener = {
  fb_done, fb_format_table, fb_main_device, fb_tranche_done, fb_tranche_target_device, fb_tranche_formats, fb_tranche_flags };
static int created_count;
static void params_created(void *d, struct zwp_linux_buffer_params_v1 *p, struct wl_buffer *b) {
  bufs[(long)d].buffer = b; created_count++; zwp_linux_buffer_params_v1_destroy(p);
}
static void params_failed(void *d, struct zwp_linux_buffer_params_v1 *p) { fprintf(stderr, "ref-client: params.failed\n"); exit(1); }
static const struct zwp_linux_buffer_params_v1_listener params_listener = { params_created, params_failed };

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: ref-client WIDTH HEIGHT FRAMES [shm|dmabuf [WARMUP [FLAG...]]]\n"); return 2; }
  int w = atoi(argv[1]), h = atoi(argv[2]), frames = atoi(argv[3]), stride = w * 4;
  int dmabuf = argc >= 5 && !strcmp(argv[4], "dmabuf"), warmup = argc >= 6 ? atoi(argv[5]) : 0;
  if (argc >= 5 && !dmabuf && strcmp(argv[4], "shm")) { fprintf(stderr, "ref-client: unknown path %s\n", argv[4]); return 2; }
  for (int i = 6; i < argc; i++) {
    if (!strcmp(argv[i], "viewport")) flag_viewport = 1;
    else if (!strcmp(argv[i], "create")) flag_create = 1;
    else if (!strcmp(argv[i], "presentation")) flag_presentation = 1;
    else if (!strcmp(argv[i], "invalid")) flag_invalid = 1;
    else if (!strcmp(argv[i], "feedback")) flag_feedback = 1;
    else if (!strcmp(argv[i], "geometry")) flag_geometry = 1;
    else if (!strcmp(argv[i], "decoration")) flag_decoration = 1;
    else { fprintf(stderr, "ref-client: unknown flag %s\n", argv[i]); return 2; }
  }
  if (argc > 6 && !dmabuf) { fprintf(stderr, "ref-client: flags apply to dmabuf mode only\n"); return 2; }
  struct wl_display *display = wl_display_connect(NULL);
  if (!display) { perror("wl_display_connect"); return 1; }
  struct wl_registry *registry = wl_display_get_registry(display);
  wl_registry_add_listener(registry, &registry_listener, NULL);
  wl_display_roundtrip(display);
  if (!compositor || !shm || !wm_base) { fprintf(stderr, "missing globals\n"); return 1; }
  if (dmabuf && !linux_dmabuf) { fprintf(stderr, "ref-client: the compositor offers no zwp_linux_dmabuf_v1 (v2+)\n"); return 1; }
  xdg_wm_base_add_listener(wm_base, &wm_listener, NULL);
  /* Each buffer starts on a page boundary (udmabuf needs page-aligned offsets and sizes). */
  size_t page = (size_t)sysconf(_SC_PAGESIZE), bufsize = ((size_t)stride * h + page - 1) / page * page, size = bufsize * NBUF;
  int fd = memfd_create("ref-client", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (ftruncate(fd, size) < 0) { perror("ftruncate"); return 1; }
  uint32_t *px = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (px == MAP_FAILED) { perror("mmap"); return 1; }
  for (size_t i = 0; i < size / 4; i++) px[i] = 0xff000000u | (uint32_t)(i * 2654435761u >> 8);
  if (dmabuf) {
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0) { perror("F_ADD_SEALS"); return 1; } /* udmabuf requires it */
    int dev = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
    if (dev < 0) { perror("/dev/udmabuf"); return 1; }
    for (long i = 0; i < NBUF; i++) {
      struct udmabuf_create create = { .memfd = fd, .flags = UDMABUF_FLAGS_CLOEXEC, .offset = i * bufsize, .size = bufsize };
      int dfd = ioctl(dev, UDMABUF_CREATE, &create);
      if (dfd < 0) { perror("UDMABUF_CREATE"); return 1; }
      struct zwp_linux_buffer_params_v1 *params = zwp_linux_dmabuf_v1_create_params(linux_dmabuf);
      /* plane 0, offset 0, linear modifier (or DRM_FORMAT_MOD_INVALID, 0x00ffffffffffffff, with "invalid") */
      zwp_linux_buffer_params_v1_add(params, dfd, 0, 0, stride, flag_invalid ? 0x00ffffffu : 0, flag_invalid ? 0xffffffffu : 0);
      if (flag_create) {
        zwp_linux_buffer_params_v1_add_listener(params, &params_listener, (void *)i);
        zwp_linux_buffer_params_v1_create(params, w, h, DRM_FORMAT_XRGB8888, 0);
      } else {
        bufs[i].buffer = zwp_linux_buffer_params_v1_create_immed(params, w, h, DRM_FORMAT_XRGB8888, 0);
        zwp_linux_buffer_params_v1_destroy(params);
      }
      close(dfd); /* the compositor has its own reference once the request is sent */
    }
    close(dev);
    while (flag_create && created_count < NBUF && wl_display_dispatch(display) >= 0) {}
    for (long i = 0; i < NBUF; i++) wl_buffer_add_listener(bufs[i].buffer, &buffer_listener, (void *)i);
    /* create_immed fails by a protocol error: a roundtrip surfaces it before the measurement. */
    if (wl_display_roundtrip(display) < 0) { fprintf(stderr, "ref-client: the compositor refused the dmabufs\n"); return 1; }
  } else {
    struct wl_shm_pool *pool = wl_shm_create_pool(shm, fd, size);
    for (long i = 0; i < NBUF; i++) {
      bufs[i].buffer = wl_shm_pool_create_buffer(pool, i * bufsize, w, h, stride, WL_SHM_FORMAT_XRGB8888);
      wl_buffer_add_listener(bufs[i].buffer, &buffer_listener, (void *)i);
    }
  }
  struct wl_surface *surface = wl_compositor_create_surface(compositor);
  struct xdg_surface *xs = xdg_wm_base_get_xdg_surface(wm_base, surface);
  xdg_surface_add_listener(xs, &xdg_surface_listener, NULL);
  struct xdg_toplevel *top = xdg_surface_get_toplevel(xs);
  xdg_toplevel_add_listener(top, &top_listener, NULL);
  if (flag_feedback) {
    if (zwp_linux_dmabuf_v1_get_version(linux_dmabuf) < 4) { fprintf(stderr, "ref-client: feedback: no linux-dmabuf v4\n"); return 1; }
    zwp_linux_dmabuf_feedback_v1_add_listener(zwp_linux_dmabuf_v1_get_surface_feedback(linux_dmabuf, surface), &fb_listener, NULL);
  }
  if (flag_viewport && !viewporter) { fprintf(stderr, "ref-client: viewport: no wp_viewporter\n"); return 1; }
  if (flag_presentation && !presentation) { fprintf(stderr, "ref-client: presentation: no wp_presentation\n"); return 1; }
  struct wp_viewport *viewport = flag_viewport ? wp_viewporter_get_viewport(viewporter, surface) : NULL;
  if (flag_decoration && decoration_manager)
    zxdg_toplevel_decoration_v1_set_mode(zxdg_decoration_manager_v1_get_toplevel_decoration(decoration_manager, top),
      ZXDG_TOPLEVEL_DECORATION_V1_MODE_SERVER_SIDE);
  xdg_toplevel_set_fullscreen(top, NULL);
  wl_surface_commit(surface);
  while (!configured && wl_display_dispatch(display) >= 0) {}
  struct timespec t0, t1;
  struct rusage r0, r1;
  int committed = 0, next = 0, started = 0;
  frames += warmup;
  while (shown < frames) {
    if (!started && shown >= warmup) {
      clock_gettime(CLOCK_MONOTONIC, &t0);
      getrusage(RUSAGE_SELF, &r0);
      started = 1;
    }
    if (frame_ready && committed < frames) {
      int b = -1;
      for (int k = 0; k < NBUF; k++) if (!bufs[(next + k) % NBUF].busy) { b = (next + k) % NBUF; break; }
      if (b >= 0) {
        bufs[b].busy = 1;
        next = b + 1;
        wl_surface_attach(surface, bufs[b].buffer, 0, 0);
        if (committed == 0 && viewport) wp_viewport_set_destination(viewport, w, h);
        if (committed == 0 && flag_geometry) xdg_surface_set_window_geometry(xs, 0, 0, w, h);
        if (presentation) wp_presentation_feedback_add_listener(wp_presentation_feedback(presentation, surface), &pf_listener, NULL);
        wl_surface_damage_buffer(surface, 0, 0, w, h);
        wl_callback_add_listener(wl_surface_frame(surface), &frame_listener, NULL);
        wl_surface_commit(surface);
        frame_ready = 0;
        committed++;
      }
    }
    if (wl_display_dispatch(display) < 0) { perror("dispatch"); return 1; }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  getrusage(RUSAGE_SELF, &r1);
  double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  double user = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6;
  double sys = (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
  printf("{\"frames\":%d,\"seconds\":%.6f,\"cpu_user_s\":%.6f,\"cpu_sys_s\":%.6f}\n", shown - warmup, secs, user, sys);
  return 0;
}
