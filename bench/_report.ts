/**
 * The report of `deno task bench`: tables whose every row is one snapvm figure next to its baseline,
 * measured in the same run, with their ratio and, where one is set, the target the ratio must meet.
 *
 * @module
 */
import { us } from "./_stats.ts";

/** A measured figure: a time in µs (median, and p90 when the samples give one) or a size in bytes. */
export interface Figure {
  /** Median (µs), or the size (bytes). */
  median: number;
  /** 90th percentile, µs; absent for derived figures (a difference or sum of medians) and sizes. */
  p90?: number;
  /** A size in bytes instead of a time. */
  bytes?: boolean;
}

/** One row: snapvm's figure, its baseline, and optionally a target for `ours / base`. */
export interface Row {
  /** What snapvm does (the row label). */
  what: string;
  /** snapvm's figure; undefined prints "n/a". */
  ours?: Figure;
  /** What the baseline is. */
  baseline: string;
  /** The baseline's figure; undefined (baseline unavailable) prints "n/a" and no ratio. */
  base?: Figure;
  /** The ratio `ours / base` must be at most this. */
  target?: number;
}

/** One table of the report. */
export interface Table {
  /** The heading, without the leading `## `. */
  title: string;
  /** The rows. */
  rows: Row[];
  /** Lines printed under the table. */
  notes: string[];
}

const MIB = 1024 * 1024;

/** A size in MiB (or KiB below 1 MiB). */
export function size(bytes: number): string {
  if (bytes < MIB) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / MIB).toFixed(bytes < 10 * MIB ? 2 : 0)} MiB`;
}

/** "median / p90", the median alone, or a size. */
export function figure(f?: Figure): string {
  if (f === undefined) return "n/a";
  if (f.bytes) return size(f.median);
  return f.p90 === undefined ? us(f.median) : `${us(f.median)} / ${us(f.p90)}`;
}

/** `a / b` of the medians, e.g. "1.32x"; "-" when either is missing. */
export function ratio(a?: Figure, b?: Figure): string {
  return a && b && b.median > 0 ? `${(a.median / b.median).toFixed(2)}x` : "-";
}

/** A figure from a median alone (a difference or a sum of medians: no p90). */
export function median(m: number): Figure {
  return { median: m };
}

/** The sum of two figures' medians (undefined when either is). */
export function sum(a?: Figure, b?: Figure): Figure | undefined {
  return a && b ? median(a.median + b.median) : undefined;
}

/** The table as Markdown lines. */
export function formatTable(t: Table): string[] {
  const lines = [
    `## ${t.title}`,
    "",
    "| what | snapvm (median / p90) | baseline | baseline (median / p90) | snapvm / baseline | target |",
    "|---|---|---|---|---|---|",
  ];
  for (const r of t.rows) {
    let target = "";
    if (r.target !== undefined) {
      const met = r.ours && r.base ? r.ours.median <= r.target * r.base.median : undefined;
      target = `≤ ${r.target.toFixed(2)}x: ${met === undefined ? "n/a" : met ? "met" : "NOT met"}`;
    }
    lines.push(
      `| ${r.what} | ${figure(r.ours)} | ${r.baseline} | ${figure(r.base)} | ${
        ratio(r.ours, r.base)
      } | ${target} |`,
    );
  }
  if (t.notes.length > 0) lines.push("", ...t.notes);
  return lines;
}
