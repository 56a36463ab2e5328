/**
 * `deno task demo`: runs the example guests in KVM micro-VMs.
 *
 * @module
 */
import { GuestCrashedError, UninitializedSandbox } from "./mod.ts";

const bin = (name: string) => new URL(`./guest/bin/${name}`, import.meta.url).pathname;

console.log("snapvm demo: guest code in a KVM micro-VM, called from Deno\n");

const t0 = performance.now();
using hello = new UninitializedSandbox(bin("hello"), { guestLogLevel: "off" }).evolve();
console.log(`hello guest ready in ${(performance.now() - t0).toFixed(2)} ms`);
console.log(`  Hello("Deno") -> ${JSON.stringify(hello.call("Hello", "Deno"))}`);
console.log(`  Twice(21n)    -> ${hello.call("Twice", 21n)}`);

const u = new UninitializedSandbox(bin("testguest"));
u.registerHostFunction("Add", { params: ["i32", "i32"], returns: "i32" }, (a: number, b: number) => a + b);
u.registerPrint((text) => console.log(`  guest printed: ${text.trimEnd()}`));
using sbx = u.evolve();
console.log("\ntest guest:");
console.log(`  Add(2, 40) via the host's Add -> ${sbx.call("Add", 2, 40)}`);
sbx.call("PrintOutput", "hello from inside the VM\n");
console.log(`  AddToStatic(5) twice -> ${sbx.call("AddToStatic", 5)}, ${sbx.call("AddToStatic", 5)}`);

const n = 1000;
const t1 = performance.now();
for (let i = 0; i < n; i++) sbx.call("EchoI32", i);
console.log(`  ${n} calls: ${((performance.now() - t1) / n * 1000).toFixed(1)} µs per call round trip`);

try {
  sbx.call("DivideByZero");
} catch (e) {
  if (!(e instanceof GuestCrashedError)) throw e;
  console.log(`\nthe guest divided by zero; the host got: ${e.message}`);
}
console.log(`sandbox poisoned: ${sbx.poisoned}; the Deno process is fine.`);
