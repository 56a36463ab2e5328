/**
 * Table 4 of `deno task bench`: the system area at load. A loader never trusts the file's page tables,
 * GDT/IDT/TSS or exception stubs: `systemAreaFor` (vm/machine/system_image.ts) reads and checks the image's
 * page-table entries from the file and rebuilds everything else from the layout (`buildSystemArea`), into a
 * sealed in-memory area that later loads of the same layout in the process reuse. Timed at a 128 KiB and a
 * 256 MiB heap, next to the cold start it is part of, measured in the same rounds.
 *
 * @module
 */
import { Snapshot } from "../mod.ts";
import { buildSystemArea, imagePageEntries } from "../vm/machine/system_area.ts";
import { dropIdleSystemAreas, systemAreaFor } from "../vm/machine/system_image.ts";
import { Blob } from "../vm/memory/blob.ts";
import { coldStart, writeGuestSnapshot } from "./_guest.ts";
import { type BenchOptions, log } from "./_options.ts";
import type { Row, Table } from "./_report.ts";
import { openBlob } from "./_steps.ts";
import { interleaved, timeSync } from "./_stats.ts";

/** The heaps of the table. */
export const SYSTEM_AREA_HEAPS: readonly (readonly [string, number])[] = [["128k", 128 << 10], [
  "256m",
  256 << 20,
]];

/** Measures table 4. */
export async function systemAreaTable(o: BenchOptions): Promise<Table> {
  const dir = await Deno.makeTempDir({ prefix: "snapvm-bench-system-" });
  const rows: Row[] = [];
  const notes: string[] = [];
  try {
    for (const [name, heapSize] of SYSTEM_AREA_HEAPS) {
      const file = `${dir}/${name}.hls`;
      log(`system area ${name}: snapshot file`);
      await writeGuestSnapshot(file, heapSize);
      // The blob as the loader opens it; it holds no system area, so dropping the idle ones empties the cache.
      const { blob, layout } = openBlob(file);
      let cached: Blob | undefined; // the area the last cache hit returned
      let missed = true;
      try {
        log(`system area ${name}: ${o.count(100)} rounds, interleaved`);
        const [first, build, seal, later, coldFirst, cold] = await interleaved(o.count(100), 5, [
          () => {
            dropIdleSystemAreas();
            let area: ReturnType<typeof systemAreaFor> | undefined;
            const ms = timeSync(() => void (area = systemAreaFor(blob, layout)));
            if (area!.blob === cached) missed = false; // something else held it: not rebuilt
            area!.release();
            return ms;
          },
          () => {
            const entries = imagePageEntries(blob, layout);
            return timeSync(() => void buildSystemArea(layout, entries));
          },
          () => {
            const bytes = buildSystemArea(layout, imagePageEntries(blob, layout));
            let sealed: Blob | undefined;
            const ms = timeSync(() => void (sealed = Blob.fromBytes(bytes)));
            sealed!.close();
            return ms;
          },
          () => {
            let area: ReturnType<typeof systemAreaFor> | undefined;
            const ms = timeSync(() => void (area = systemAreaFor(blob, layout)));
            cached = area!.blob;
            area!.release();
            return ms;
          },
          () => {
            dropIdleSystemAreas();
            return coldStart(() => Snapshot.fromFileUnchecked(file));
          },
          () => coldStart(() => Snapshot.fromFileUnchecked(file)),
        ]);
        const c = "(c) cold start: fromFileUnchecked → first Echo";
        rows.push(
          {
            what: `${name} systemAreaFor, first load in the process (rebuild + seal)`,
            ours: first,
            baseline: c,
            base: cold,
          },
          { what: `${name} of which buildSystemArea (tables, stubs)`, ours: build, baseline: c, base: cold },
          { what: `${name} of which sealing it (Blob.fromBytes)`, ours: seal, baseline: c, base: cold },
          {
            what: `${name} systemAreaFor, later loads (image PTEs read + checked)`,
            ours: later,
            baseline: c,
            base: cold,
          },
          {
            what: `${name} cold start, system area not cached`,
            ours: coldFirst,
            baseline: `${c}, system area cached`,
            base: cold,
          },
        );
      } finally {
        blob.close();
        await Deno.remove(file);
      }
      if (!missed) {
        notes.push(`!!! ${name}: a system area stayed referenced: the first-load rows hit the cache.`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  notes.push(
    "Ratios are shares of the cold start. systemAreaFor keeps built areas for later loads of the same layout " +
      "in the process; each load still reads and checks the image's page-table entries and hashes them as the key.",
  );
  return {
    title:
      "4. System area at load: page tables, GDT/IDT/TSS and stubs rebuilt from the layout, not read from the file",
    rows,
    notes,
  };
}
