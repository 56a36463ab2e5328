/**
 * The host's side of the mailbox (docs/ABI.md, "Hot mode"): 128 bytes at the top of the guest's stack
 * through which a hot sandbox's calls, host calls and log records pass without a VM exit.
 *
 * The guest writes the mailbox (and can write all of it, the host's line too), so the host never reads
 * back anything it wrote there: it keeps its own sequence numbers and only reads the guest's sequence
 * number and message kind, checking that the number advanced by exactly one and that the kind is known.
 * The message itself is in the output buffer and is decoded with the bounds-checked codec, as for
 * exit-based calls.
 *
 * @module
 */
import {
  MAILBOX,
  MAILBOX_DONE,
  MAILBOX_HOST_CALL,
  MAILBOX_LOG,
  MAILBOX_MODE_HOT,
  MAILBOX_SIZE,
} from "./abi.ts";
import { ProtocolError } from "./codec.ts";
import type { Layout } from "./layout.ts";
import type { Mapping } from "../memory/mapping.ts";

/**
 * Index of the guest's sequence number in {@linkcode Mailbox.words}.
 *
 * @example
 * ```ts
 * import { GUEST_SEQ_INDEX } from "./mailbox.ts";
 * console.log(GUEST_SEQ_INDEX); // 16 (byte 64)
 * ```
 */
export const GUEST_SEQ_INDEX = MAILBOX.GUEST_SEQ / 4;

/**
 * Kinds of guest messages.
 *
 * @example
 * ```ts
 * import type { MailboxKind } from "./mailbox.ts";
 * const kind: MailboxKind = 2; // a host call
 * console.log(kind);
 * ```
 */
export type MailboxKind = typeof MAILBOX_DONE | typeof MAILBOX_HOST_CALL | typeof MAILBOX_LOG;

/**
 * A sandbox's mailbox.
 *
 * @example
 * ```ts ignore
 * const mb = new Mailbox(vm.scratch, vm.layout);
 * mb.post(idleTicks);
 * // … wait until mb.pending …
 * console.log(mb.take()); // 1: the call's result is in the output buffer
 * ```
 */
export class Mailbox {
  /** The mailbox as 32-bit words: `words[GUEST_SEQ_INDEX]` is what a host waits on. */
  readonly words: Int32Array;
  readonly #words: Int32Array;
  readonly #view: DataView;
  #hostSeq = 0;
  #guestSeq = 0;

  /** The mailbox of a sandbox with this layout, in its scratch mapping. */
  constructor(scratch: Mapping, layout: Layout) {
    const base = layout.stackTop - MAILBOX_SIZE;
    const bytes = scratch.bytes;
    const offset = bytes.byteOffset + base - layout.scratchBase;
    this.#words = new Int32Array(bytes.buffer, offset, MAILBOX_SIZE / 4);
    this.#view = new DataView(bytes.buffer, offset, MAILBOX_SIZE);
    this.words = this.#words;
  }

  /** The guest's sequence number the host has taken last (the value a wait compares with). */
  get seen(): number {
    return this.#guestSeq;
  }

  /** The scratch region was emptied and the guest enters afresh: both sides count from 0 again. */
  reset(): void {
    this.#hostSeq = this.#guestSeq = 0;
  }

  /**
   * Zeroes the mailbox and counts from 0 again: for a restore that zeroes only the scratch pages the guest
   * wrote, since the host's own writes to the mailbox are not in the dirty log.
   */
  clear(): void {
    this.#words.fill(0);
    this.reset();
  }

  /**
   * Posts what the host wrote (a request in the input buffer, an answer in the output buffer): sets hot
   * mode and the idle budget (`idleTicks`, TSC ticks) and bumps the host's sequence number.
   */
  post(idleTicks: bigint): void {
    // Rewritten every time: the guest may have overwritten them, and they sit in the line the guest reads
    // anyway.
    this.#words[MAILBOX.MODE / 4] = MAILBOX_MODE_HOT;
    this.#view.setBigUint64(MAILBOX.IDLE_TSC, idleTicks, true);
    this.#hostSeq = (this.#hostSeq + 1) | 0;
    Atomics.store(this.#words, MAILBOX.HOST_SEQ / 4, this.#hostSeq);
  }

  /** True when the guest has posted a message the host has not taken. */
  get pending(): boolean {
    return Atomics.load(this.#words, MAILBOX.GUEST_SEQ / 4) !== this.#guestSeq;
  }

  /**
   * Takes the guest's message and returns its kind. Throws {@linkcode ProtocolError} when the sequence
   * number did not advance by exactly one or the kind is unknown.
   */
  take(): MailboxKind {
    const seq = Atomics.load(this.#words, MAILBOX.GUEST_SEQ / 4);
    const expected = (this.#guestSeq + 1) | 0;
    if (seq !== expected) {
      throw new ProtocolError(`mailbox guest_seq is ${seq >>> 0}, expected ${expected >>> 0}`);
    }
    const kind = Atomics.load(this.#words, MAILBOX.KIND / 4);
    if (kind !== MAILBOX_DONE && kind !== MAILBOX_HOST_CALL && kind !== MAILBOX_LOG) {
      throw new ProtocolError(`mailbox message kind is ${kind >>> 0}, expected 1, 2 or 3`);
    }
    this.#guestSeq = seq;
    return kind;
  }

  /** Throws {@linkcode ProtocolError} when the guest posted a message while no call was running. */
  checkIdle(): void {
    if (this.pending) {
      const seq = Atomics.load(this.#words, MAILBOX.GUEST_SEQ / 4) >>> 0;
      throw new ProtocolError(`mailbox guest_seq is ${seq} between calls, expected ${this.#guestSeq >>> 0}`);
    }
  }
}
