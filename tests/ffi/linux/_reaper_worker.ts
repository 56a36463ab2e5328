/// <reference lib="deno.worker" />
/**
 * A Worker for tests/ffi/linux/reaper_test.ts, driven by messages:
 *
 * - `track`: makes a memfd, an anonymous mapping and a POSIX timer, tracks them, posts their ids;
 * - `untracked`: makes a memfd, tracks it, untracks it without closing it (as code does right before a
 *   release), posts its fd;
 * - `full`: fills the table with fds no process has, tracks one more (a real memfd), posts what happened,
 *   untracks the fillers;
 * - `end`: posts whether anything is tracked, then ends itself.
 */
import {
  libc,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MFD_CLOEXEC,
  PROT_READ,
  PROT_WRITE,
} from "../../../ffi/linux/libc.ts";
import {
  MAX_OWNED,
  trackedResources,
  trackFd,
  trackMapping,
  trackTimer,
  untrackFd,
} from "../../../ffi/linux/reaper.ts";

const memfd = (name: string) => libc().memfd_create(new TextEncoder().encode(`${name}\0`), MFD_CLOEXEC);

self.onmessage = (e: MessageEvent<string>) => {
  const c = libc();
  if (e.data === "track") {
    const fd = trackFd(memfd("snapvm-reaper-test"));
    const p = trackMapping(
      c.mmap(null, 65536n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n)!,
      65536,
    );
    const ev = new Uint8Array(64);
    new DataView(ev.buffer).setInt32(12, 1, true); // SIGEV_NONE
    const id = new BigUint64Array(1);
    if (c.timer_create(1, ev, new Uint8Array(id.buffer)) !== 0) throw new Error("timer_create failed");
    trackTimer(id[0]);
    self.postMessage({ fd, address: BigInt(Deno.UnsafePointer.value(p)).toString(16), timer: Number(id[0]) });
  } else if (e.data === "untracked") {
    const fd = trackFd(memfd("snapvm-reaper-untracked"));
    untrackFd(fd);
    self.postMessage({ fd });
  } else if (e.data === "full") {
    const fillers = Array.from({ length: MAX_OWNED }, (_, i) => 1_000_000 + i);
    for (const f of fillers) trackFd(f);
    const fd = memfd("snapvm-reaper-overflow");
    let error = "";
    try {
      trackFd(fd);
    } catch (err) {
      error = `${(err as Error).name}: ${(err as Error).message}`;
    }
    for (const f of fillers) untrackFd(f);
    self.postMessage({ fd, error, tracked: trackedResources().fds.length });
  } else if (e.data === "end") {
    const t = trackedResources();
    self.postMessage({
      empty: t.fds.length + t.mappings.length + t.timers.length + t.runThreads.length === 0,
    });
    self.close();
  }
};
