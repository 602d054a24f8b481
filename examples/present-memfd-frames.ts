// Embedding wlscanout: a VMM hands frames that live in its guest-RAM memfd to the wl_shm presenter.
// Built by `make` into dist-examples/; run inside a Wayland session: node dist-examples/examples/present-memfd-frames.js
import { Presenter } from '../src/present/presenter.js';
import { memfdCreate, ftruncate, addSeals, mmap, constants } from '../src/native/fds.js';
import { formatByName } from '../src/formats.js';

const width = 640;
const height = 480;
const format = formatByName('XRGB8888')!;
const stride = width * format.bytesPerPixel;

// "Guest RAM": one memfd, sealed against shrinking so the compositor's mapping stays valid.
const ram = memfdCreate('my-vm-ram', true);
ftruncate(ram, stride * height);
addSeals(ram, constants.F_SEAL_SHRINK);
const pixels = new Uint32Array(mmap(ram, 0, stride * height, true));
pixels.fill(format.pack(0, 128, 255, 255));

const presenter = await Presenter.open({ title: 'my VM', appId: 'my-vmm' });
presenter.on('close', () => { presenter.close(); process.exit(0); });
presenter.on('error', (e) => { console.error(e.message); process.exit(1); });

// One scan-out: the presenter makes a wl_shm pool on `ram` itself, nothing is copied.
presenter.present({
  fd: ram, offset: 0, width, height, stride, fourcc: format.fourcc,
  damage: null, seq: 0, flushedAt: process.hrtime.bigint(),
  release: () => console.log('the compositor is done with frame 0: the guest may draw into it again'),
});
