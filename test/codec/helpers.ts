// Shared helpers for the codec tests.
import { execFileSync, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Message } from "capnp-es";
import type { CapTableReader, CapTableWriter, InterfaceDef } from "../../src/codec/types.js";

export const FIXTURE_DIR = fileURLToPath(new URL("./fixtures/", import.meta.url));
export const SCHEMA = "codectest.capnp";
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

export const hasCapnp = spawnSync("capnp", ["--version"]).status === 0;

/** The reference implementation's text rendering of a stream-framed message. */
export function capnpDecode(type: string, bytes: Uint8Array | ArrayBuffer): string {
  return execFileSync("capnp", ["decode", "--short", SCHEMA, type], {
    cwd: FIXTURE_DIR,
    env: { ...process.env, PWD: FIXTURE_DIR },
    input: bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes),
  })
    .toString("utf8")
    .trim();
}

/** The reference implementation's encoding (stream-framed) of a text value. */
export function capnpEncode(type: string, text: string): Uint8Array {
  return new Uint8Array(execFileSync("capnp", ["encode", SCHEMA, type], {
      cwd: FIXTURE_DIR,
      env: { ...process.env, PWD: FIXTURE_DIR },
      input: text,
    }));
}

/**
 * A stand-in for a capability client (it has the Capability methods), which
 * the encoder accepts in any capability field; FakeCaps records it as is.
 */
export function fakeClient(name: string): { name: string; release(): void; dup(): unknown; whenResolved(): Promise<void> } {
  return {
    name,
    release() {},
    dup() {
      return this;
    },
    whenResolved: async () => {},
  };
}

export interface RecordedCap {
  readonly value: unknown;
  readonly iface: InterfaceDef | null;
}

/**
 * A cap table that records what is written (value + interface per index) and
 * hands out `{ index, iface, value }` stand-ins when read.
 */
export class FakeCaps implements CapTableWriter, CapTableReader {
  readonly added: RecordedCap[] = [];
  readonly gets: { index: number; iface: InterfaceDef | null }[] = [];

  add(value: unknown, iface: InterfaceDef | null): number {
    if (value == null) return -1;
    this.added.push({ value, iface });
    return this.added.length - 1;
  }

  get(index: number, iface: InterfaceDef | null): unknown {
    const entry = this.added[index];
    if (entry === undefined) throw new Error(`no capability ${index}`);
    this.gets.push({ index, iface });
    return { index, iface: iface?.name ?? null, value: entry.value };
  }
}

/** The bytes (stream framing) of a message. */
export function bytesOf(message: Message): Uint8Array {
  return new Uint8Array(message.toArrayBuffer());
}

/** The root struct's data section of a single-segment message, as bytes. */
export function rootData(message: Message): Uint8Array {
  const seg = message.getSegment(0);
  const lo = seg.getInt32(0);
  const hi = seg.getUint32(4);
  const start = 8 + (lo >> 2) * 8;
  return new Uint8Array(seg.buffer, start, (hi & 0xffff) * 8).slice();
}
