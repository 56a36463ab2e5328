// HRESULT and Win32 error values against mingw-w64's winerror.h (quoted lines: the WHV_E_* and VID/HV
// values are from the copy in mingw-w64-tools/widl/include/winerror.h, the E_* and ERROR_* ones from
// mingw-w64-headers/include/winerror.h), and the typed errors built from them.
import assert from "node:assert/strict";
import { valueOf } from "./_layout.ts";
import {
  checkHresult,
  describeHresult,
  failed,
  HRESULT,
  HresultError,
  toUnsigned,
  WIN32_ERROR,
  Win32Error,
} from "../../../ffi/windows/hresult.ts";

Deno.test("HRESULT values match winerror.h", () => {
  const quoted: Record<string, string> = {
    S_OK: "#define S_OK ((HRESULT)0x00000000)",
    E_NOTIMPL: "#define E_NOTIMPL _HRESULT_TYPEDEF_(0x80004001)",
    E_FAIL: "#define E_FAIL _HRESULT_TYPEDEF_(0x80004005)",
    E_ACCESSDENIED: "#define E_ACCESSDENIED _HRESULT_TYPEDEF_(0x80070005)",
    E_OUTOFMEMORY: "#define E_OUTOFMEMORY _HRESULT_TYPEDEF_(0x8007000E)",
    E_INVALIDARG: "#define E_INVALIDARG _HRESULT_TYPEDEF_(0x80070057)",
    E_UNEXPECTED: "#define E_UNEXPECTED _HRESULT_TYPEDEF_(0x8000FFFF)",
    WHV_E_UNKNOWN_CAPABILITY: "#define WHV_E_UNKNOWN_CAPABILITY _HRESULT_TYPEDEF_(0x80370300)",
    WHV_E_INSUFFICIENT_BUFFER: "#define WHV_E_INSUFFICIENT_BUFFER _HRESULT_TYPEDEF_(0x80370301)",
    WHV_E_UNKNOWN_PROPERTY: "#define WHV_E_UNKNOWN_PROPERTY _HRESULT_TYPEDEF_(0x80370302)",
    WHV_E_UNSUPPORTED_HYPERVISOR_CONFIG:
      "#define WHV_E_UNSUPPORTED_HYPERVISOR_CONFIG _HRESULT_TYPEDEF_(0x80370303)",
    WHV_E_INVALID_PARTITION_CONFIG: "#define WHV_E_INVALID_PARTITION_CONFIG _HRESULT_TYPEDEF_(0x80370304)",
    WHV_E_GPA_RANGE_NOT_FOUND: "#define WHV_E_GPA_RANGE_NOT_FOUND _HRESULT_TYPEDEF_(0x80370305)",
    WHV_E_VP_ALREADY_EXISTS: "#define WHV_E_VP_ALREADY_EXISTS _HRESULT_TYPEDEF_(0x80370306)",
    WHV_E_VP_DOES_NOT_EXIST: "#define WHV_E_VP_DOES_NOT_EXIST _HRESULT_TYPEDEF_(0x80370307)",
    WHV_E_INVALID_VP_STATE: "#define WHV_E_INVALID_VP_STATE _HRESULT_TYPEDEF_(0x80370308)",
    WHV_E_INVALID_VP_REGISTER_NAME: "#define WHV_E_INVALID_VP_REGISTER_NAME _HRESULT_TYPEDEF_(0x80370309)",
    ERROR_HV_NOT_PRESENT: "#define ERROR_HV_NOT_PRESENT _NDIS_ERROR_TYPEDEF_(0xC0351000)",
    ERROR_VID_PARTITION_ALREADY_EXISTS:
      "#define ERROR_VID_PARTITION_ALREADY_EXISTS _NDIS_ERROR_TYPEDEF_(0xC0370008)",
  };
  for (const [name, line] of Object.entries(quoted)) {
    assert.equal(HRESULT[name as keyof typeof HRESULT], valueOf(line), name);
  }
  assert.equal(Object.keys(HRESULT).length, Object.keys(quoted).length, "every HRESULT is pinned");
});

Deno.test("Win32 error codes match winerror.h", () => {
  const quoted: Record<string, string> = {
    ERROR_FILE_NOT_FOUND: "#define ERROR_FILE_NOT_FOUND __MSABI_LONG(2)",
    ERROR_PATH_NOT_FOUND: "#define ERROR_PATH_NOT_FOUND __MSABI_LONG(3)",
    ERROR_ACCESS_DENIED: "#define ERROR_ACCESS_DENIED __MSABI_LONG(5)",
    ERROR_NOT_ENOUGH_MEMORY: "#define ERROR_NOT_ENOUGH_MEMORY __MSABI_LONG(8)",
    ERROR_SHARING_VIOLATION: "#define ERROR_SHARING_VIOLATION __MSABI_LONG(32)",
    ERROR_HANDLE_EOF: "#define ERROR_HANDLE_EOF __MSABI_LONG(38)",
    ERROR_NOT_SUPPORTED: "#define ERROR_NOT_SUPPORTED __MSABI_LONG(50)",
    ERROR_INVALID_PARAMETER: "#define ERROR_INVALID_PARAMETER __MSABI_LONG(87)",
    ERROR_BROKEN_PIPE: "#define ERROR_BROKEN_PIPE __MSABI_LONG(109)",
    ERROR_MOD_NOT_FOUND: "#define ERROR_MOD_NOT_FOUND __MSABI_LONG(126)",
    ERROR_PROC_NOT_FOUND: "#define ERROR_PROC_NOT_FOUND __MSABI_LONG(127)",
    ERROR_ALREADY_EXISTS: "#define ERROR_ALREADY_EXISTS __MSABI_LONG(183)",
    ERROR_INVALID_ADDRESS: "#define ERROR_INVALID_ADDRESS __MSABI_LONG(487)",
    ERROR_COMMITMENT_LIMIT: "#define ERROR_COMMITMENT_LIMIT __MSABI_LONG(1455)",
  };
  for (const [name, line] of Object.entries(quoted)) {
    assert.equal(WIN32_ERROR[name as keyof typeof WIN32_ERROR], valueOf(line), name);
  }
  assert.equal(Object.keys(WIN32_ERROR).length, Object.keys(quoted).length);
});

Deno.test("failed HRESULTs become typed errors naming the call, the code and its meaning", () => {
  // FFI returns HRESULT as i32: failures arrive negative.
  const signed = HRESULT.WHV_E_GPA_RANGE_NOT_FOUND | 0;
  assert.ok(signed < 0);
  assert.equal(toUnsigned(signed), HRESULT.WHV_E_GPA_RANGE_NOT_FOUND);
  assert.equal(failed(signed), true);
  assert.equal(failed(0), false);
  assert.equal(failed(1), false); // S_FALSE is a success
  assert.doesNotThrow(() => checkHresult("WHvSetupPartition", 0));
  assert.throws(() => checkHresult("WHvQueryGpaRangeDirtyBitmap", signed), (e: unknown) => {
    assert.ok(e instanceof HresultError);
    assert.equal(e.call, "WHvQueryGpaRangeDirtyBitmap");
    assert.equal(e.code, "WHV_E_GPA_RANGE_NOT_FOUND");
    assert.equal(
      e.message,
      "WHvQueryGpaRangeDirtyBitmap failed: WHV_E_GPA_RANGE_NOT_FOUND (0x80370305): no guest-physical range is mapped (or dirty-tracked) there",
    );
    return true;
  });
  const vid = new HresultError("WHvMapGpaRange", HRESULT.ERROR_VID_PARTITION_ALREADY_EXISTS | 0);
  assert.equal(vid.hresult, 0xc0370008);
  assert.match(vid.message, /ERROR_VID_PARTITION_ALREADY_EXISTS \(0xC0370008\)/);
  // An HRESULT wrapping a Win32 error (FACILITY_WIN32) names the Win32 error.
  assert.equal(
    describeHresult(0x800705af),
    "HRESULT 0x800705AF, ERROR_COMMITMENT_LIMIT (1455): the commit limit is reached (enlarge the paging file or run fewer sandboxes at once)",
  );
  assert.equal(describeHresult(0x80371234), "HRESULT 0x80371234");
});

Deno.test("Win32 errors name the call and the code", () => {
  const e = new Win32Error("VirtualAlloc2", 1455);
  assert.equal(e.code, "ERROR_COMMITMENT_LIMIT");
  assert.match(e.message, /^VirtualAlloc2 failed: ERROR_COMMITMENT_LIMIT \(1455\)/);
  assert.equal(new Win32Error("ReadFile", 9999).message, "ReadFile failed: Win32 error 9999");
});
