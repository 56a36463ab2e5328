/**
 * The snapshot loader's checks on top of the file codec's: the exact memory layout and the function table in
 * the blob (the special registers: `../machine/sregs.ts`). Everything here reads hostile bytes.
 *
 * @module
 */
import { SnapshotFormatError } from "../../format/errors.ts";
import type { ParsedSnapshot } from "../../format/hls.ts";
import { FUNC_TABLE_SIZE, IMAGE_BASE, PAGE } from "../machine/abi.ts";
import { ProtocolError, Reader } from "../machine/codec.ts";
import { readFunctionList } from "../machine/functions.ts";
import { CONFIG_LIMITS } from "../config.ts";
import { computeLayout, type Layout } from "../machine/layout.ts";
import type { GuestFunctionInfo } from "../types.ts";

/** The layout a header describes, which must match snapvm's layout exactly. */
export function layoutOf(p: ParsedSnapshot): Layout {
  const h = p.header;
  const bad = (field: string, found: number | bigint, expected: string): never => {
    throw new SnapshotFormatError("InvalidField", { field, found, expected });
  };
  for (
    const [field, value] of [["input_data_size", h.inputDataSize], [
      "output_data_size",
      h.outputDataSize,
    ]] as const
  ) {
    const [min, max] = CONFIG_LIMITS.inputDataSize;
    if (value % PAGE !== 0 || value < min || value > max) {
      bad(field, value, `a multiple of ${PAGE} from ${min} to ${max}`);
    }
  }
  const stackSize = h.scratchSize - h.inputDataSize - h.outputDataSize;
  const [smin, smax] = CONFIG_LIMITS.stackSize;
  if (stackSize < smin || stackSize > smax) {
    bad("scratch_size", h.scratchSize, `stack (scratch_size - buffers) from ${smin} to ${smax}`);
  }
  let layout: Layout;
  try {
    layout = computeLayout({
      imageEnd: IMAGE_BASE + h.codeSize,
      heapSize: h.heapSize,
      stackSize,
      inputDataSize: h.inputDataSize,
      outputDataSize: h.outputDataSize,
    });
  } catch (e) {
    return bad("memory_size", h.memorySize, (e as Error).message);
  }
  if (layout.persistentSize !== h.memorySize) bad("memory_size", h.memorySize, `${layout.persistentSize}`);
  if (layout.stackTop !== h.stackTopGva) bad("stack_top_gva", h.stackTopGva, `${layout.stackTop}`);
  if (layout.ptPages * PAGE !== h.ptSize) {
    bad("pt_size", h.ptSize, `${layout.ptPages * PAGE} for this layout`);
  }
  return layout;
}

/** Parses the function table in a blob (hostile bytes: any problem is a SnapshotFormatError). */
export function readFunctionTable(table: Uint8Array): ReadonlyMap<string, GuestFunctionInfo> {
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const len = view.getUint32(0, true);
  if (len > FUNC_TABLE_SIZE - 4) {
    throw new SnapshotFormatError("InvalidField", {
      field: "function table length",
      found: len,
      expected: `at most ${FUNC_TABLE_SIZE - 4}`,
    });
  }
  const bytes = table.subarray(4, 4 + len);
  try {
    const r = new Reader(bytes, new DataView(bytes.buffer, bytes.byteOffset, len), len);
    const fns = readFunctionList(r);
    if (r.pos !== len) throw new ProtocolError(`${len - r.pos} bytes follow the last function`);
    return fns;
  } catch (e) {
    if (!(e instanceof ProtocolError)) throw e;
    throw new SnapshotFormatError("InvalidField", {
      field: "function table",
      found: e.message,
      expected: "a valid list",
    });
  }
}
