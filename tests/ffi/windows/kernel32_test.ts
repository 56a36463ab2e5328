// Pins the kernel32/kernelbase constants against mingw-w64's winnt.h, memoryapi.h, fileapi.h,
// handleapi.h and winbase.h (each quoted line is copied from the header named).
import assert from "node:assert/strict";
import { layout, valueOf } from "./_layout.ts";
import {
  DUPLICATE,
  FILE,
  FILE_INFO,
  FILE_MAP,
  INVALID_HANDLE_VALUE,
  MEM,
  OVERLAPPED,
  PAGE,
  wide,
} from "../../../ffi/windows/kernel32.ts";

function pins(table: Record<string, number>, quoted: Record<string, string>): void {
  for (const [name, line] of Object.entries(quoted)) {
    assert.equal(table[name], valueOf(line), `${name}: ${line}`);
  }
}

Deno.test("page protections and allocation types match winnt.h", () => {
  pins(PAGE, {
    NOACCESS: "#define PAGE_NOACCESS 0x01",
    READONLY: "#define PAGE_READONLY 0x02",
    READWRITE: "#define PAGE_READWRITE 0x04",
    WRITECOPY: "#define PAGE_WRITECOPY 0x08",
  });
  pins(MEM, {
    COMMIT: "#define MEM_COMMIT 0x1000",
    RESERVE: "#define MEM_RESERVE 0x2000",
    REPLACE_PLACEHOLDER: "#define MEM_REPLACE_PLACEHOLDER 0x4000",
    DECOMMIT: "#define MEM_DECOMMIT 0x4000",
    RELEASE: "#define MEM_RELEASE 0x8000",
    RESERVE_PLACEHOLDER: "#define MEM_RESERVE_PLACEHOLDER 0x40000",
    COALESCE_PLACEHOLDERS: "#define MEM_COALESCE_PLACEHOLDERS 0x00000001",
    PRESERVE_PLACEHOLDER: "#define MEM_PRESERVE_PLACEHOLDER 0x00000002",
  });
});

Deno.test("file-mapping access matches memoryapi.h and winnt.h", () => {
  // memoryapi.h: #define FILE_MAP_WRITE SECTION_MAP_WRITE / #define FILE_MAP_READ SECTION_MAP_READ
  pins(FILE_MAP, {
    COPY: "#define FILE_MAP_COPY 0x1",
    WRITE: "#define SECTION_MAP_WRITE 0x0002",
    READ: "#define SECTION_MAP_READ 0x0004",
  });
});

Deno.test("file, handle and duplicate constants match winnt.h, fileapi.h, handleapi.h, winbase.h", () => {
  pins(FILE, {
    GENERIC_READ: "#define GENERIC_READ (__MSABI_LONG(0x80000000))",
    SHARE_READ: "#define FILE_SHARE_READ 0x00000001",
    SHARE_WRITE: "#define FILE_SHARE_WRITE 0x00000002",
    SHARE_DELETE: "#define FILE_SHARE_DELETE 0x00000004",
    ATTRIBUTE_DIRECTORY: "#define FILE_ATTRIBUTE_DIRECTORY 0x00000010",
    ATTRIBUTE_NORMAL: "#define FILE_ATTRIBUTE_NORMAL 0x00000080",
    OPEN_EXISTING: "#define OPEN_EXISTING 3",
    TYPE_DISK: "#define FILE_TYPE_DISK 0x1",
  });
  pins(DUPLICATE, {
    CLOSE_SOURCE: "#define DUPLICATE_CLOSE_SOURCE 0x00000001",
    SAME_ACCESS: "#define DUPLICATE_SAME_ACCESS 0x00000002",
  });
  // handleapi.h: #define INVALID_HANDLE_VALUE ((HANDLE) (LONG_PTR)-1)
  assert.equal(INVALID_HANDLE_VALUE, (1n << 64n) - 1n);
});

Deno.test("BY_HANDLE_FILE_INFORMATION and OVERLAPPED layouts (fileapi.h, minwinbase.h)", () => {
  const fi = layout(`
    DWORD dwFileAttributes;
    FILETIME ftCreationTime;
    FILETIME ftLastAccessTime;
    FILETIME ftLastWriteTime;
    DWORD dwVolumeSerialNumber;
    DWORD nFileSizeHigh;
    DWORD nFileSizeLow;
    DWORD nNumberOfLinks;
    DWORD nFileIndexHigh;
    DWORD nFileIndexLow;
  `);
  assert.equal(fi.size, FILE_INFO.SIZE);
  assert.equal(fi.offsets.dwFileAttributes, FILE_INFO.ATTRIBUTES);
  assert.equal(fi.offsets.ftLastWriteTime, FILE_INFO.LAST_WRITE_TIME);
  assert.equal(fi.offsets.dwVolumeSerialNumber, FILE_INFO.VOLUME_SERIAL);
  assert.equal(fi.offsets.nFileSizeHigh, FILE_INFO.SIZE_HIGH);
  assert.equal(fi.offsets.nFileSizeLow, FILE_INFO.SIZE_LOW);
  assert.equal(fi.offsets.nFileIndexHigh, FILE_INFO.INDEX_HIGH);
  assert.equal(fi.offsets.nFileIndexLow, FILE_INFO.INDEX_LOW);
  const ov = layout(`
    ULONG_PTR Internal;
    ULONG_PTR InternalHigh;
            DWORD Offset;
            DWORD OffsetHigh;
    HANDLE hEvent;
  `);
  assert.equal(ov.size, OVERLAPPED.SIZE);
  assert.equal(ov.offsets.Offset, OVERLAPPED.OFFSET);
  assert.equal(ov.offsets.OffsetHigh, OVERLAPPED.OFFSET_HIGH);
});

Deno.test("wide() makes NUL-terminated UTF-16LE", () => {
  assert.deepEqual([...wide("A\\é")], [0x41, 0, 0x5c, 0, 0xe9, 0, 0, 0]);
});
