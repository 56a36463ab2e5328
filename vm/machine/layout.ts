/**
 * Where everything lives in guest memory (docs/ABI.md, "Memory map").
 *
 * @module
 */
import { FUNC_TABLE_ADDR, IMAGE_BASE, MAX_GUEST_MEMORY, PAGE, PT_ADDR } from "./abi.ts";

/** Rounds up to a multiple of the page size. */
export function pageAlign(n: number): number {
  return Math.ceil(n / PAGE) * PAGE;
}

/**
 * The memory layout of one sandbox. All addresses are guest-physical (== guest-virtual) byte addresses.
 * The persistent region is `[0, persistentSize)`; the scratch region is
 * `[scratchBase, scratchBase + scratchSize)`, with an unmapped guard page between them.
 *
 * @example
 * ```ts
 * import { computeLayout } from "./layout.ts";
 * const l = computeLayout({ imageEnd: 0x210000, heapSize: 131072, stackSize: 65536,
 *   inputDataSize: 16384, outputDataSize: 16384 });
 * console.log(l.stackTop.toString(16));
 * ```
 */
export interface Layout {
  /** First byte past the loaded image (page aligned). */
  readonly imageEnd: number;
  /** Heap start (== imageEnd) and size. */
  readonly heapBase: number;
  /** Heap size in bytes (page multiple). */
  readonly heapSize: number;
  /** Size of the persistent region, which starts at 0. */
  readonly persistentSize: number;
  /** Start of the scratch region (stack bottom). */
  readonly scratchBase: number;
  /** Stack size (page multiple). */
  readonly stackSize: number;
  /** Initial stack pointer. */
  readonly stackTop: number;
  /** Input buffer address and size. */
  readonly inputBase: number;
  /** Input buffer size in bytes. */
  readonly inputSize: number;
  /** Output buffer address. */
  readonly outputBase: number;
  /** Output buffer size in bytes. */
  readonly outputSize: number;
  /** Size of the scratch region. */
  readonly scratchSize: number;
  /** Number of page-table pages (PML4 + PDPT + PD + one PT per 2 MiB). */
  readonly ptPages: number;
}

/** The sizes a layout is computed from (all page multiples except imageEnd, which is aligned here). */
export interface LayoutSizes {
  /** End of the guest image. */
  imageEnd: number;
  /** Heap size. */
  heapSize: number;
  /** Stack size. */
  stackSize: number;
  /** Input buffer size. */
  inputDataSize: number;
  /** Output buffer size. */
  outputDataSize: number;
}

/**
 * Computes the layout; throws RangeError when the total exceeds what the page tables can map.
 *
 * @example
 * ```ts
 * import { computeLayout } from "./layout.ts";
 * computeLayout({ imageEnd: 0x201000, heapSize: 4096, stackSize: 8192, inputDataSize: 4096,
 *   outputDataSize: 4096 });
 * ```
 */
export function computeLayout(s: LayoutSizes): Layout {
  const imageEnd = pageAlign(Math.max(s.imageEnd, IMAGE_BASE));
  const heapSize = pageAlign(s.heapSize);
  const persistentSize = imageEnd + heapSize;
  const scratchBase = persistentSize + PAGE;
  const stackSize = pageAlign(s.stackSize);
  const inputSize = pageAlign(s.inputDataSize);
  const outputSize = pageAlign(s.outputDataSize);
  const stackTop = scratchBase + stackSize;
  const scratchSize = stackSize + inputSize + outputSize;
  const end = scratchBase + scratchSize;
  if (end > MAX_GUEST_MEMORY) {
    throw new RangeError(
      `Guest memory of ${end} bytes (image, heap, stack and buffers) exceeds the maximum of ${MAX_GUEST_MEMORY}`,
    );
  }
  const ptPages = 3 + Math.ceil(end / 0x200000);
  if (PT_ADDR + (ptPages - 3) * PAGE > FUNC_TABLE_ADDR) throw new RangeError("page tables do not fit");
  return {
    imageEnd,
    heapBase: imageEnd,
    heapSize,
    persistentSize,
    scratchBase,
    stackSize,
    stackTop,
    inputBase: stackTop,
    inputSize,
    outputBase: stackTop + inputSize,
    outputSize,
    scratchSize,
    ptPages,
  };
}
