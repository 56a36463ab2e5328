/**
 * The host's side of the mailbox (vm/machine/mailbox.ts) against guest writes, without a VM: the guest's
 * line is written here as a hostile guest could.
 */
import assert from "node:assert/strict";
import { MAILBOX, MAILBOX_SIZE } from "../../../vm/machine/abi.ts";
import { ProtocolError } from "../../../vm/machine/codec.ts";
import { computeLayout } from "../../../vm/machine/layout.ts";
import { GUEST_SEQ_INDEX, Mailbox } from "../../../vm/machine/mailbox.ts";
import { Mapping } from "../../../vm/memory/mapping.ts";

function setup() {
  const layout = computeLayout({
    imageEnd: 0x210000,
    heapSize: 4096,
    stackSize: 8192,
    inputDataSize: 4096,
    outputDataSize: 4096,
  });
  const scratch = Mapping.reserve(layout.scratchSize);
  const at = layout.stackTop - MAILBOX_SIZE - layout.scratchBase;
  const view = new DataView(scratch.bytes.buffer, at, MAILBOX_SIZE);
  return { scratch, view, mailbox: new Mailbox(scratch, layout) };
}

Deno.test("the mailbox is the top 128 bytes of the stack; a post sets hot mode, idle budget, host_seq", () => {
  const { scratch, view, mailbox } = setup();
  using _ = scratch;
  mailbox.post(123456789n);
  assert.equal(view.getUint32(MAILBOX.HOST_SEQ, true), 1);
  assert.equal(view.getUint32(MAILBOX.MODE, true), 1);
  assert.equal(view.getBigUint64(MAILBOX.IDLE_TSC, true), 123456789n);
  // The guest overwrites the host's line: the host does not read it back, it rewrites it.
  view.setUint32(MAILBOX.HOST_SEQ, 77, true);
  view.setUint32(MAILBOX.MODE, 0, true);
  mailbox.post(5n);
  assert.equal(view.getUint32(MAILBOX.HOST_SEQ, true), 2);
  assert.equal(view.getUint32(MAILBOX.MODE, true), 1);
  assert.equal(view.getBigUint64(MAILBOX.IDLE_TSC, true), 5n);
  assert.equal(mailbox.words[GUEST_SEQ_INDEX], 0);
});

Deno.test("a message is taken only when guest_seq advanced by one and the kind is known", () => {
  const { scratch, view, mailbox } = setup();
  using _ = scratch;
  assert.equal(mailbox.pending, false);
  mailbox.checkIdle();
  for (const kind of [1, 2, 3]) {
    view.setUint32(MAILBOX.KIND, kind, true);
    view.setUint32(MAILBOX.GUEST_SEQ, mailbox.seen + 1, true);
    assert.equal(mailbox.pending, true);
    assert.equal(mailbox.take(), kind);
    assert.equal(mailbox.pending, false);
  }
  view.setUint32(MAILBOX.KIND, 2, true);
  view.setUint32(MAILBOX.GUEST_SEQ, mailbox.seen + 2, true);
  assert.throws(
    () => mailbox.take(),
    (e: unknown) => e instanceof ProtocolError && /guest_seq is 5, expected 4/.test(e.message),
  );
  view.setUint32(MAILBOX.GUEST_SEQ, mailbox.seen + 1, true);
  for (const kind of [0, 4, 0xffffffff]) {
    view.setUint32(MAILBOX.KIND, kind, true);
    assert.throws(
      () => mailbox.take(),
      (e: unknown) => e instanceof ProtocolError && /kind is/.test(e.message),
    );
  }
  assert.throws(() => mailbox.checkIdle(), /between calls/);
});

Deno.test("reset: after a restore both sides count from 0 again", () => {
  const { scratch, view, mailbox } = setup();
  using _ = scratch;
  mailbox.post(1n);
  view.setUint32(MAILBOX.KIND, 1, true);
  view.setUint32(MAILBOX.GUEST_SEQ, 1, true);
  mailbox.take();
  scratch.bytes.fill(0);
  mailbox.reset();
  assert.equal(mailbox.seen, 0);
  mailbox.checkIdle();
  mailbox.post(1n);
  assert.equal(view.getUint32(MAILBOX.HOST_SEQ, true), 1);
});
