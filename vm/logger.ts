/**
 * The module's logger: guest log records and snapvm's own warnings go through one replaceable function.
 *
 * @module
 */
import type { LogLevel } from "./config.ts";

/**
 * One log record.
 *
 * @example
 * ```ts
 * import type { LogRecord } from "./logger.ts";
 * const r: LogRecord = { level: "warn", source: "snapvm", message: "hi" };
 * ```
 */
export interface LogRecord {
  /** Severity. */
  readonly level: Exclude<LogLevel, "off">;
  /** `"guest"` for records the guest sent, `"snapvm"` for the module's own. */
  readonly source: "guest" | "snapvm";
  /** The text. */
  readonly message: string;
}

/**
 * A log sink.
 *
 * @example
 * ```ts
 * import type { Logger } from "./logger.ts";
 * const logger: Logger = (r) => console.log(r.message);
 * ```
 */
export type Logger = (record: LogRecord) => void;

const defaultLogger: Logger = (r) => {
  const line = `[${r.source} ${r.level}] ${r.message}`;
  if (r.level === "error") console.error(line);
  else if (r.level === "warn") console.warn(line);
  else console.log(line);
};

let current: Logger = defaultLogger;

/**
 * Replaces the module's logger; pass `undefined` to restore the default (console). Applies to this
 * thread (each Worker has its own).
 *
 * @example
 * ```ts
 * import { setLogger } from "./logger.ts";
 * const records: unknown[] = [];
 * setLogger((r) => records.push(r));
 * setLogger(undefined);
 * ```
 */
export function setLogger(logger: Logger | undefined): void {
  current = logger ?? defaultLogger;
}

/** Sends a record to the current logger. */
export function log(record: LogRecord): void {
  current(record);
}
