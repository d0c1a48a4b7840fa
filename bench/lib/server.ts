// The server side of every TypeScript system:
//
//   <server> [arguments of its own] <address>
//
// listens on the address, prints `listening <address>` once ready, and serves
// until SIGTERM/SIGINT, until its stdin (when a pipe) closes, or until its
// parent process is gone (so it never outlives the runner).
//
// Bench semantics, shared with peers/cpp/bench-peer.c++: the bootstrap Bench
// has depth 0 and ping(n) returns n; next(depth) returns a Bench of that
// depth, whose ping returns its depth. Chains are pinged with n = 10 at depth
// 10, so a server may follow either reading.
import fs from "node:fs";
import { formatAddress, parseAddress, type Address } from "./address.js";

/** `start` gets the address (the last argument) and the arguments before it. */
export async function runServer(start: (address: Address, args: string[]) => Promise<Address>): Promise<void> {
  const args = process.argv.slice(2);
  const text = args.pop();
  if (text === undefined) {
    process.stderr.write("usage: <server> [arguments] <address>\n");
    process.exit(2);
  }
  const exit = (): never => process.exit(0);
  process.on("SIGTERM", exit);
  process.on("SIGINT", exit);
  // Closing stdin is a stop request (as for the C++ peer), when stdin is a
  // pipe; a terminal or /dev/null (a background job) does not count.
  let stdin: fs.Stats | undefined;
  try {
    stdin = fs.fstatSync(0);
  } catch {
    // no stdin at all
  }
  if (stdin !== undefined && (stdin.isFIFO() || stdin.isSocket())) {
    process.stdin.on("end", exit);
    process.stdin.on("error", exit);
    process.stdin.resume();
  }
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) exit();
  }, 500).unref();
  try {
    const bound = await start(parseAddress(text), args);
    process.stdout.write(`listening ${formatAddress(bound)}\n`);
  } catch (err) {
    process.stderr.write(`server failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
