// Embedding wlscanout as a VMM's virtio-gpu display: forward the guest's RESOURCE_CREATE_BLOB, SET_SCANOUT_BLOB,
// RESOURCE_FLUSH and RESOURCE_UNREF to a VirtioGpu, and give its frames to a Presenter. Guest memory is imported
// once per resource (udmabuf → linux-dmabuf where the kernel and compositor allow, else wl_shm on the memfd);
// each flush's promise settles when the host is done with that frame: complete the guest's fence then.
// Run inside a Wayland session: node dist-examples/examples/vmm-blob-scanout.js
import { Presenter } from '../src/present/presenter.js';
import { VirtioGpu } from '../src/source/virtio-gpu.js';
import { memfdCreate, ftruncate, addSeals, mmap, constants } from '../src/native/fds.js';
import { formatByName } from '../src/formats.js';

const width = 640;
const height = 480;
const format = formatByName('XRGB8888')!;
const stride = width * format.bytesPerPixel;
const bufferSize = Math.ceil((stride * height) / constants.PAGE_SIZE) * constants.PAGE_SIZE;

// Guest RAM: a memfd sealed against shrinking (udmabuf requires it; it also keeps the compositor safe).
const ram = memfdCreate('my-vm-ram', true);
ftruncate(ram, 2 * bufferSize);
addSeals(ram, constants.F_SEAL_SHRINK);
const guestPixels = new Uint32Array(mmap(ram, 0, 2 * bufferSize, true));

const gpu = new VirtioGpu();
const presenter = await Presenter.open({ title: 'my VM (virtio-gpu)', appId: 'my-vmm' });
gpu.on('frame', (frame) => presenter.present(frame)); // throws ImportError for a frame that cannot be shown
presenter.on('close', () => { gpu.reset(); presenter.close(); process.exit(0); });
presenter.on('error', (e) => { console.error(e.message); process.exit(1); });

// Two blob resources in guest RAM, as a double-buffering guest driver would create them.
for (const id of [1, 2]) {
  gpu.resourceCreateBlob({
    id, width, height, fourcc: format.fourcc, planes: [{ offset: 0, stride }],
    memory: [{ memfd: ram, offset: (id - 1) * bufferSize, length: bufferSize }],
  });
}

// The guest draws into resource 1 and flushes it; the host shows it without a copy.
guestPixels.fill(format.pack(0, 128, 255, 255), 0, width * height);
gpu.setScanoutBlob(0, 1);
const done = await gpu.resourceFlush(1, { damage: null, fence: null });
console.log(`resource 1 released by the host${done.releaseFence === null ? '' : ' (with a release fence)'}: complete the guest's fence`);
