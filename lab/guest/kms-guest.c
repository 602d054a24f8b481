/*
 * kms-guest: init (PID 1) of the lab's tiny Linux VM. Shows a deterministic test pattern on the virtio-gpu
 * card through raw DRM ioctls (no libdrm library), then animates a small region with DIRTYFB clips.
 *
 *   kernel command line: wlscanout.frames=N (default: forever)  wlscanout.interval_ms=MS (default 500)
 *   wlscanout.full=1: redraw and flush the whole frame each time (a full-screen workload, e.g. for benchmarks)
 *                        wlscanout.exit=reboot (reboot after the last frame; default: idle forever)
 *                        wlscanout.input=1: after frame 0, also echo the input devices to the console (below)
 *                        wlscanout.cursor=1: show a 64x64 cursor (hotspot 8,8) from frame 0 to the last frame, then
 *                          hide it: its top-left 32x32 quarter opaque red, the one below opaque green, the
 *                          right half transparent ("kms-guest: cursor shown" / "kms-guest: cursor hidden")
 *   on a host:           kms-guest --dump W H FRAME  > pixels   (W*H little-endian 0x00RRGGBB words)
 *
 * The pattern is kms_guest_pixel() below; src/source/kms-guest-pattern.ts is the same function in TypeScript.
 *
 * Serial lines: "kms-guest: frame N shown WxH t=SECONDS" per frame, "kms-guest: done after N frames, rebooting|idling",
 * "kms-guest: WHAT failed: errno N (TEXT)" (then it idles: PID 1 never exits).
 * With wlscanout.input=1 (and only then) it opens every /dev/input/event* (virtio-keyboard-pci, virtio-tablet-pci,
 * virtio-mouse-pci on the lab kernel; looked for every 200 ms for 5 s after frame 0, then every second, so late and
 * hot-plugged devices are found too), waits for their events in ppoll() between frames and while idling, and prints
 *   kms-guest: input NAME          once per device (EVIOCGNAME), "kms-guest: input gone NAME" when it goes away
 *   kms-guest: input none found    when there is still no device 5 s after frame 0
 *   kms-guest: key CODE VALUE      EV_KEY: Linux evdev key code (KEY_A = 30, BTN_LEFT = 272), 1 press 0 release 2 repeat
 *   kms-guest: abs AXIS VALUE      EV_ABS: ABS_X = 0, ABS_Y = 1 (QEMU's virtio tablet: 0..32767)
 *   kms-guest: rel AXIS VALUE      EV_REL: REL_X = 0, REL_Y = 1, REL_WHEEL = 8
 * (EV_SYN, EV_MSC and the rest are not printed.) Without wlscanout.input the output and timing are as before.
 */
#define _GNU_SOURCE /* ppoll */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <poll.h>
#include <unistd.h>
#include <linux/input.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <libdrm/drm.h>
#include <libdrm/drm_mode.h>
#include <libdrm/drm_fourcc.h>

/* The frame box: a row of 16 cells (16x16 px) showing the frame number's low 16 bits, least significant
 * on the left (white = 1), over a 16 px bar whose colour changes every frame. Only this box is redrawn. */
enum { BOX_X = 16, BOX_Y = 16, CELL = 16, BOX_W = 16 * CELL, BOX_H = 2 * CELL };

/* 0x00RRGGBB of pixel (x, y) of frame `frame` on a w x h screen. Cheap, and every pixel depends on its
 * exact position, so misplacement, stride errors, channel swaps and off-by-one all show. */
uint32_t kms_guest_pixel(uint32_t x, uint32_t y, uint32_t frame, uint32_t w, uint32_t h)
{
	if (x == 0 || y == 0 || x == w - 1 || y == h - 1)
		return 0xFFFFFF; /* 1-px white border */
	if (x >= BOX_X && x < BOX_X + BOX_W && y >= BOX_Y && y < BOX_Y + BOX_H) {
		if (y < BOX_Y + CELL)
			return (frame >> ((x - BOX_X) / CELL)) & 1 ? 0xFFFFFF : 0x000000;
		return (frame * 53 & 0xFF) << 16 | (frame * 101 & 0xFF) << 8 | (frame * 197 & 0xFF);
	}
	uint32_t d = (x ^ y) & 0xFF;
	switch ((x >= w / 2) + 2 * (y >= h / 2)) {
	case 0: return 0xFF0000 | d << 8;                        /* top left: red, XOR in green */
	case 1: return 0x00FF00 | d;                             /* top right: green, XOR in blue */
	case 2: return 0x0000FF | d << 16;                       /* bottom left: blue, XOR in red */
	default: return (x & 0xFF) << 16 | (y & 0xFF) << 8 | d; /* bottom right: x, y, XOR */
	}
}

static void fill(uint8_t *map, uint32_t pitch, uint32_t w, uint32_t h, uint32_t frame,
		 uint32_t x0, uint32_t y0, uint32_t x1, uint32_t y1)
{
	for (uint32_t y = y0; y < y1; y++) {
		uint32_t *row = (uint32_t *)(map + (size_t)y * pitch);
		for (uint32_t x = x0; x < x1; x++)
			row[x] = kms_guest_pixel(x, y, frame, w, h);
	}
}

static int dump(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s --dump WIDTH HEIGHT FRAME\n", argv[0]);
		return 2;
	}
	uint32_t w = strtoul(argv[2], NULL, 0), h = strtoul(argv[3], NULL, 0), frame = strtoul(argv[4], NULL, 0);
	uint8_t *image = malloc((size_t)w * h * 4);
	if (!image || w == 0 || h == 0)
		return 2;
	fill(image, w * 4, w, h, frame, 0, 0, w, h);
	return fwrite(image, (size_t)w * 4, h, stdout) == h && fflush(stdout) == 0 ? 0 : 1;
}

/* PID 1 must never exit (the kernel would panic): on error, say what failed and idle. */
static void idle(void)
{
	for (;;)
		pause();
}

static void fail(const char *what)
{
	printf("kms-guest: %s failed: errno %d (%s)\n", what, errno, strerror(errno));
	idle();
}

#define IOCTL(fd, req, arg) do { if (ioctl(fd, req, arg) != 0) fail(#req); } while (0)

/* A w x h XRGB dumb buffer, created and mapped; `what` names it if that fails. */
static uint8_t *create_mapped_dumb(int fd, uint32_t w, uint32_t h, struct drm_mode_create_dumb *dumb, const char *what)
{
	*dumb = (struct drm_mode_create_dumb){ .width = w, .height = h, .bpp = 32 };
	IOCTL(fd, DRM_IOCTL_MODE_CREATE_DUMB, dumb);
	struct drm_mode_map_dumb map_req = { .handle = dumb->handle };
	IOCTL(fd, DRM_IOCTL_MODE_MAP_DUMB, &map_req);
	uint8_t *map = mmap(NULL, dumb->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, map_req.offset);
	if (map == MAP_FAILED)
		fail(what);
	return map;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The value of kernel command line parameter `name` (it ends at a space or newline), or NULL. */
static const char *cmdline_param(const char *name)
{
	static char buf[4096] = " "; /* a space before every parameter, the first too */
	int fd = open("/proc/cmdline", O_RDONLY);
	if (fd >= 0 && buf[1] == 0) {
		ssize_t n = read(fd, buf + 1, sizeof buf - 2);
		buf[n > 0 ? n + 1 : 1] = 0;
	}
	if (fd >= 0)
		close(fd);
	char key[64];
	snprintf(key, sizeof key, " %s=", name);
	const char *p = strstr(buf, key);
	return p ? p + strlen(key) : NULL;
}

/* The virtio_gpu card; the lab kernel also has vgem and vkms. Device probing may finish after init starts. */
static int open_virtio_gpu(void)
{
	for (int attempt = 0; attempt < 50; attempt++) {
		glob_t g;
		if (glob("/dev/dri/card*", 0, NULL, &g) == 0) {
			for (size_t i = 0; i < g.gl_pathc; i++) {
				int fd = open(g.gl_pathv[i], O_RDWR | O_CLOEXEC);
				char name[32] = "";
				struct drm_version v = { .name_len = sizeof name - 1, .name = name };
				if (fd >= 0 && ioctl(fd, DRM_IOCTL_VERSION, &v) == 0 && strcmp(name, "virtio_gpu") == 0) {
					globfree(&g);
					return fd;
				}
				if (fd >= 0)
					close(fd);
			}
			globfree(&g);
		}
		usleep(100 * 1000);
	}
	errno = ENODEV;
	fail("finding the virtio_gpu card in /dev/dri");
	return -1;
}

/* wlscanout.input=1: the input devices being watched, found by rescanning /dev/input. */
enum { MAX_INPUTS = 32 };
static struct {
	int on, count, announced_none;
	struct pollfd fds[MAX_INPUTS];
	char paths[MAX_INPUTS][32], names[MAX_INPUTS][128];
	double started, next_scan;
} input;

static void input_scan(void)
{
	glob_t g;
	if (glob("/dev/input/event*", 0, NULL, &g) == 0) {
		for (size_t i = 0; i < g.gl_pathc && input.count < MAX_INPUTS; i++) {
			int known = 0;
			for (int d = 0; d < input.count && !known; d++)
				known = strcmp(input.paths[d], g.gl_pathv[i]) == 0;
			if (known || strlen(g.gl_pathv[i]) >= sizeof input.paths[0])
				continue;
			int fd = open(g.gl_pathv[i], O_RDONLY | O_NONBLOCK | O_CLOEXEC);
			if (fd < 0)
				continue; /* not ready yet (or gone): the next scan tries again */
			int d = input.count++;
			input.fds[d] = (struct pollfd){ .fd = fd, .events = POLLIN };
			strcpy(input.paths[d], g.gl_pathv[i]);
			if (ioctl(fd, EVIOCGNAME(sizeof input.names[d] - 1), input.names[d]) < 0)
				snprintf(input.names[d], sizeof input.names[d], "%s", g.gl_pathv[i]);
			input.names[d][sizeof input.names[d] - 1] = 0;
			printf("kms-guest: input %s\n", input.names[d]);
		}
		globfree(&g);
	}
	double t = now();
	if (input.count == 0 && !input.announced_none && t - input.started >= 5) {
		input.announced_none = 1;
		printf("kms-guest: input none found\n");
	}
	input.next_scan = t + (t - input.started < 5 ? 0.2 : 1.0);
}

static void input_remove(int d)
{
	printf("kms-guest: input gone %s\n", input.names[d]);
	close(input.fds[d].fd);
	input.count--;
	input.fds[d] = input.fds[input.count];
	memcpy(input.paths[d], input.paths[input.count], sizeof input.paths[d]);
	memcpy(input.names[d], input.names[input.count], sizeof input.names[d]);
}

static void input_read(int d)
{
	struct input_event ev[64];
	for (;;) {
		ssize_t n = read(input.fds[d].fd, ev, sizeof ev);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) { /* ENODEV: unplugged */
			input_remove(d);
			return;
		}
		for (size_t i = 0; i < (size_t)n / sizeof ev[0]; i++) {
			const char *kind = ev[i].type == EV_KEY ? "key" : ev[i].type == EV_ABS ? "abs" : ev[i].type == EV_REL ? "rel" : NULL;
			if (kind)
				printf("kms-guest: %s %u %d\n", kind, ev[i].code, ev[i].value);
		}
	}
}

/* Sleep until the absolute CLOCK_MONOTONIC time `deadline` (NULL: forever); with wlscanout.input, echo input
 * events and rescan for devices meanwhile. */
static void wait_until(const struct timespec *deadline)
{
	if (!input.on) {
		if (deadline)
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, deadline, NULL);
		else
			idle();
		return;
	}
	for (;;) {
		double t = now();
		if (t >= input.next_scan) {
			input_scan();
			t = now();
		}
		double until = input.next_scan;
		if (deadline) {
			double end = deadline->tv_sec + deadline->tv_nsec / 1e9;
			if (t >= end)
				return;
			until = end < until ? end : until;
		}
		double left = until > t ? until - t : 0;
		struct timespec timeout = { (time_t)left, (long)((left - (time_t)left) * 1e9) };
		if (ppoll(input.fds, input.count, &timeout, NULL) <= 0)
			continue;
		for (int d = input.count - 1; d >= 0; d--) /* backwards: input_remove moves the last one into d */
			if (input.fds[d].revents)
				input_read(d);
	}
}

int main(int argc, char **argv)
{
	if (getpid() != 1 && argc > 1 && strcmp(argv[1], "--dump") == 0)
		return dump(argc, argv);

	/* The 9p root is read-only; devtmpfs may already be on /dev (DEVTMPFS_MOUNT), then EBUSY is fine. */
	mount("proc", "/proc", "proc", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	int con = open("/dev/console", O_RDWR);
	if (con >= 0) {
		for (int i = 0; i < 3; i++)
			dup2(con, i);
		if (con > 2)
			close(con);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	const char *frames_arg = cmdline_param("wlscanout.frames"), *interval_arg = cmdline_param("wlscanout.interval_ms");
	const char *exit_arg = cmdline_param("wlscanout.exit");
	unsigned long frames = frames_arg ? strtoul(frames_arg, NULL, 10) : ULONG_MAX; /* default: forever */
	unsigned long interval_ms = interval_arg ? strtoul(interval_arg, NULL, 10) : 500;
	int do_reboot = exit_arg && strncmp(exit_arg, "reboot", 6) == 0;

	int fd = open_virtio_gpu();

	uint32_t crtcs[16], connectors[16], encoders[16];
	struct drm_mode_card_res res = { 0 };
	IOCTL(fd, DRM_IOCTL_MODE_GETRESOURCES, &res); /* first call: counts only */
	if (res.count_crtcs > 16 || res.count_connectors > 16 || res.count_encoders > 16) {
		errno = E2BIG;
		fail("DRM_IOCTL_MODE_GETRESOURCES (too many objects)");
	}
	res = (struct drm_mode_card_res){
		.crtc_id_ptr = (uintptr_t)crtcs, .count_crtcs = res.count_crtcs,
		.connector_id_ptr = (uintptr_t)connectors, .count_connectors = res.count_connectors,
		.encoder_id_ptr = (uintptr_t)encoders, .count_encoders = res.count_encoders,
	};
	IOCTL(fd, DRM_IOCTL_MODE_GETRESOURCES, &res);

	struct drm_mode_modeinfo modes[64], mode;
	uint32_t conn_encoders[16];
	struct drm_mode_get_connector conn;
	uint32_t i;
	for (i = 0; i < res.count_connectors; i++) {
		conn = (struct drm_mode_get_connector){ .connector_id = connectors[i] };
		IOCTL(fd, DRM_IOCTL_MODE_GETCONNECTOR, &conn); /* counts; also probes the modes */
		if (conn.connection != 1 /* connected */ || conn.count_modes == 0)
			continue;
		conn.count_modes = conn.count_modes < 64 ? conn.count_modes : 64;
		conn.count_encoders = conn.count_encoders < 16 ? conn.count_encoders : 16;
		conn.modes_ptr = (uintptr_t)modes;
		conn.encoders_ptr = (uintptr_t)conn_encoders;
		conn.count_props = 0;
		IOCTL(fd, DRM_IOCTL_MODE_GETCONNECTOR, &conn);
		break;
	}
	if (i == res.count_connectors) {
		errno = ENODEV;
		fail("finding a connected connector");
	}
	mode = modes[0];
	for (uint32_t m = 0; m < conn.count_modes; m++)
		if (modes[m].type & DRM_MODE_TYPE_PREFERRED) {
			mode = modes[m];
			break;
		}

	/* The connector's current encoder, else its first; that encoder's CRTC, else its first possible one. */
	struct drm_mode_get_encoder enc = { .encoder_id = conn.encoder_id ? conn.encoder_id : conn_encoders[0] };
	IOCTL(fd, DRM_IOCTL_MODE_GETENCODER, &enc);
	uint32_t crtc_id = enc.crtc_id;
	for (uint32_t c = 0; !crtc_id && c < res.count_crtcs; c++)
		if (enc.possible_crtcs & (1u << c))
			crtc_id = crtcs[c];

	uint32_t w = mode.hdisplay, h = mode.vdisplay;
	struct drm_mode_create_dumb dumb;
	uint8_t *map = create_mapped_dumb(fd, w, h, &dumb, "mmap of the dumb buffer");
	struct drm_mode_fb_cmd2 fb = {
		.width = w, .height = h, .pixel_format = DRM_FORMAT_XRGB8888,
		.handles = { dumb.handle }, .pitches = { dumb.pitch },
	};
	IOCTL(fd, DRM_IOCTL_MODE_ADDFB2, &fb);

	fill(map, dumb.pitch, w, h, 0, 0, 0, w, h);
	struct drm_mode_crtc set = {
		.set_connectors_ptr = (uintptr_t)&conn.connector_id, .count_connectors = 1,
		.crtc_id = crtc_id, .fb_id = fb.fb_id, .mode_valid = 1, .mode = mode,
	};
	IOCTL(fd, DRM_IOCTL_MODE_SETCRTC, &set);
	printf("kms-guest: frame 0 shown %ux%u t=%.3f\n", w, h, now());

	const char *cursor_arg = cmdline_param("wlscanout.cursor");
	struct drm_mode_cursor2 cursor = { .flags = DRM_MODE_CURSOR_BO | DRM_MODE_CURSOR_MOVE, .crtc_id = crtc_id,
					   .x = 100, .y = 100, .width = 64, .height = 64, .hot_x = 8, .hot_y = 8 };
	if (cursor_arg && cursor_arg[0] == '1') {
		struct drm_mode_create_dumb cdumb;
		uint8_t *cpix = create_mapped_dumb(fd, 64, 64, &cdumb, "mmap of the cursor buffer");
		for (uint32_t y = 0; y < 64; y++)
			for (uint32_t x = 0; x < 64; x++)
				*(uint32_t *)(cpix + y * cdumb.pitch + x * 4) = x >= 32 ? 0 : y < 32 ? 0xffff0000u : 0xff00ff00u;
		munmap(cpix, cdumb.size);
		cursor.handle = cdumb.handle;
		IOCTL(fd, DRM_IOCTL_MODE_CURSOR2, &cursor);
		printf("kms-guest: cursor shown\n");
	}

	const char *input_arg = cmdline_param("wlscanout.input");
	if (input_arg && input_arg[0] == '1') {
		input.on = 1;
		input.started = input.next_scan = now();
	}

	/* Only the frame box changes; it stays inside the border. */
	const char *full_arg = cmdline_param("wlscanout.full");
	int full = full_arg && full_arg[0] == '1';
	struct drm_clip_rect clip = { BOX_X, BOX_Y, BOX_X + BOX_W, BOX_Y + BOX_H };
	clip.x2 = clip.x2 < w - 1 ? clip.x2 : w - 1;
	clip.y2 = clip.y2 < h - 1 ? clip.y2 : h - 1;
	/* Full mode rewrites every byte each frame, as a guest compositing its whole screen would: a copy of frame 0
	 * (computed once: computing the pattern per pixel is too slow for 60 fps under TCG) plus the frame box. */
	uint8_t *frame0 = NULL;
	if (full) {
		clip = (struct drm_clip_rect){ 0, 0, w, h };
		frame0 = malloc((size_t)dumb.pitch * h);
		if (frame0) memcpy(frame0, map, (size_t)dumb.pitch * h);
	}
	/* Absolute deadlines, so drawing time does not lower the frame rate below 1000/interval_ms. */
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (unsigned long frame = 1; frame <= frames; frame++) {
		next.tv_nsec += (long)(interval_ms % 1000) * 1000000L;
		next.tv_sec += interval_ms / 1000 + next.tv_nsec / 1000000000L;
		next.tv_nsec %= 1000000000L;
		wait_until(&next);
		if (clip.x2 > clip.x1 && clip.y2 > clip.y1) {
			if (frame0) {
				memcpy(map, frame0, (size_t)dumb.pitch * h);
				fill(map, dumb.pitch, w, h, (uint32_t)frame, BOX_X, BOX_Y, BOX_X + BOX_W < w - 1 ? BOX_X + BOX_W : w - 1,
				     BOX_Y + BOX_H < h - 1 ? BOX_Y + BOX_H : h - 1);
			} else {
				fill(map, dumb.pitch, w, h, (uint32_t)frame, clip.x1, clip.y1, clip.x2, clip.y2);
			}
			struct drm_mode_fb_dirty_cmd dirty = { .fb_id = fb.fb_id, .num_clips = 1, .clips_ptr = (uintptr_t)&clip };
			IOCTL(fd, DRM_IOCTL_MODE_DIRTYFB, &dirty);
		}
		printf("kms-guest: frame %lu shown %ux%u t=%.3f\n", frame, w, h, now());
	}
	if (cursor.handle) {
		struct drm_mode_cursor2 hide = { .flags = DRM_MODE_CURSOR_BO, .crtc_id = crtc_id };
		IOCTL(fd, DRM_IOCTL_MODE_CURSOR2, &hide);
		printf("kms-guest: cursor hidden\n");
	}
	printf("kms-guest: done after %lu frames, %s\n", frames, do_reboot ? "rebooting" : "idling");
	if (do_reboot) {
		sync();
		reboot(RB_AUTOBOOT);
		fail("reboot");
	}
	wait_until(NULL);
}
