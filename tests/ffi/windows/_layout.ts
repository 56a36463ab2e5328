// A small C struct layout calculator for the header excerpts quoted in the Windows pin tests: natural
// alignment, bit-fields packed into units of their declared type (as MSVC and mingw-w64 lay them out on
// x64). Knows only the types those excerpts use.

const SIZES: Record<string, number> = {
  UINT8: 1,
  UINT16: 2,
  UINT32: 4,
  UINT64: 8,
  WHV_GUEST_PHYSICAL_ADDRESS: 8,
  WHV_GUEST_VIRTUAL_ADDRESS: 8,
  WHV_RUN_VP_EXIT_REASON: 4,
  WHV_X64_VP_EXECUTION_STATE: 2,
  WHV_X64_SEGMENT_REGISTER: 16,
  WHV_VP_EXIT_CONTEXT: 40,
  WHV_MEMORY_ACCESS_INFO: 4,
  WHV_X64_IO_PORT_ACCESS_INFO: 4,
  WHV_VP_EXCEPTION_INFO: 4,
  WHV_X64_UNSUPPORTED_FEATURE_CODE: 4,
  DWORD: 4,
  FILETIME: 8,
  ULONG_PTR: 8,
  HANDLE: 8,
};
const ALIGN: Record<string, number> = { WHV_X64_SEGMENT_REGISTER: 8, WHV_VP_EXIT_CONTEXT: 8, FILETIME: 4 };

/** Field offsets (and total size) of a struct body given as its member lines. */
export function layout(body: string): { offsets: Record<string, number>; size: number } {
  const offsets: Record<string, number> = {};
  let at = 0, maxAlign = 1;
  let unit: { type: string; start: number; bits: number } | undefined;
  for (const raw of body.split("\n")) {
    const m = raw.trim().match(/^(\w+)\s+(\w+)(?:\[(\d+)\])?\s*(?::\s*(\d+))?;$/);
    if (!m) continue;
    const [, type, name, count, bits] = m;
    const size = SIZES[type];
    if (size === undefined) throw new Error(`unknown type ${type}`);
    const align = ALIGN[type] ?? size;
    maxAlign = Math.max(maxAlign, align);
    if (bits !== undefined) {
      const width = Number(bits);
      if (unit === undefined || unit.type !== type || unit.bits + width > size * 8) {
        at = Math.ceil(at / align) * align;
        unit = { type, start: at, bits: 0 };
        at += size;
      }
      offsets[name] = unit.start;
      unit.bits += width;
      continue;
    }
    unit = undefined;
    at = Math.ceil(at / align) * align;
    offsets[name] = at;
    at += size * (count === undefined ? 1 : Number(count));
  }
  return { offsets, size: Math.ceil(at / maxAlign) * maxAlign };
}

/** The number a quoted `NAME = 0x...,` or `#define NAME value` line gives its name (its last number). */
export function valueOf(line: string): number {
  const all = line.match(/0x[0-9a-fA-F]+|\b\d+\b/g);
  if (all === null) throw new Error(`no value in: ${line}`);
  return Number(all[all.length - 1]);
}
