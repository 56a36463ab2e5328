// The WHP time limit's watchdog Worker and its arm stack, run for real on any OS: with no DLL the Worker
// records kicks in the VM's control block instead of calling WHvCancelRunVirtualProcessor.
import assert, { equal } from "node:assert/strict";
import { VmControl } from "../../../vm/whp/_control.ts";
import { Watchdog } from "../../../vm/whp/_watchdog.ts";
import { CANCEL_SYMBOL } from "../../../ffi/windows/winhvplatform.ts";

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function target(c: VmControl) {
  return { control: c.shared, partition: 0x1234n };
}

Deno.test("a deadline kicks a running VM and keeps kicking until acknowledged", async () => {
  const w = new Watchdog(null, CANCEL_SYMBOL);
  try {
    const c = new VmControl();
    assert(c.enter());
    w.arm(target(c), 20);
    await until(() => c.kicks >= 2, "two kicks");
    assert(c.cancelRequested);
    c.leave();
    c.acknowledge();
    w.disarm();
    equal(w.depth, 0);
  } finally {
    w.close();
  }
});

Deno.test("a deadline that passes between runs makes the next run return at once", async () => {
  const w = new Watchdog(null, CANCEL_SYMBOL);
  try {
    const c = new VmControl();
    w.arm(target(c), 10);
    await until(() => c.cancelRequested, "the cancel request");
    equal(c.kicks, 0, "no hypervisor call for a VM that is not running");
    equal(c.enter(), false, "enter() refuses while a cancel is pending");
    c.acknowledge();
    assert(c.enter());
    c.leave();
    w.disarm();
  } finally {
    w.close();
  }
});

Deno.test("disarming before the deadline cancels nothing", async () => {
  const w = new Watchdog(null, CANCEL_SYMBOL);
  try {
    const c = new VmControl();
    assert(c.enter());
    w.arm(target(c), 300);
    w.disarm();
    await new Promise((r) => setTimeout(r, 600));
    equal(c.cancelRequested, false);
    equal(c.kicks, 0);
    c.leave();
  } finally {
    w.close();
  }
});

Deno.test("nested arms: the inner deadline fires for the inner VM, disarming restores the outer", async () => {
  const w = new Watchdog(null, CANCEL_SYMBOL);
  try {
    const outer = new VmControl(), inner = new VmControl();
    w.arm(target(outer), 60_000);
    assert(inner.enter());
    w.arm(target(inner), 10);
    equal(w.depth, 2);
    await until(() => inner.kicks >= 1, "the inner kick");
    inner.leave();
    inner.acknowledge();
    w.disarm();
    equal(w.depth, 1);
    equal(outer.cancelRequested, false, "the outer deadline is still ahead");
    w.disarm();
    equal(w.depth, 0);
  } finally {
    w.close();
  }
});

Deno.test("an outer deadline that passed while an inner call ran fires as soon as it is restored", async () => {
  const w = new Watchdog(null, CANCEL_SYMBOL);
  try {
    const outer = new VmControl(), inner = new VmControl();
    w.arm(target(outer), 20);
    w.arm(target(inner), 60_000);
    await new Promise((r) => setTimeout(r, 100));
    equal(outer.cancelRequested, false, "only the innermost deadline is watched");
    w.disarm();
    assert(outer.cancelRequested, "restoring an expired deadline cancels at once");
    w.disarm();
  } finally {
    w.close();
  }
});

Deno.test("an idle watchdog does not keep the process alive", async () => {
  // A child process arms and disarms once and then has nothing left to do: it must exit by itself.
  const code = `
    import { Watchdog } from ${JSON.stringify(new URL("../../../vm/whp/_watchdog.ts", import.meta.url).href)};
    import { VmControl } from ${JSON.stringify(new URL("../../../vm/whp/_control.ts", import.meta.url).href)};
    const w = new Watchdog(null, { parameters: ["pointer", "u32", "u32"], result: "i32" });
    const c = new VmControl();
    w.arm({ control: c.shared, partition: 0n }, 50);
    w.disarm();
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const out = await child.output();
  clearTimeout(timer);
  equal(out.code, 0, new TextDecoder().decode(out.stderr));
});
