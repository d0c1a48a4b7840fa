// Pieces of the results files shared by the bench runners.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT } from "./processes.js";

/** A table number: thousands separators from 100 up, 3 significant digits below. */
export function fmt(v: number): string {
  if (v >= 100) return Math.round(v).toLocaleString("en-US");
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** Cost relative to a floor, as the tables print it after a value: " (1.9×)". */
export function relative(cost: number): string {
  return ` (${cost < 1 ? cost.toPrecision(2) : cost.toFixed(1)}×)`;
}

/** The installed version of an npm package. */
export function packageVersion(pkg: string): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(ROOT, "node_modules", pkg, "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "not installed";
  }
}

/** CPU, OS and Node lines, then one line naming the given packages' versions. */
export function machineFacts(packages: readonly string[]): string[] {
  let cpu = "unknown";
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"));
    if (m) cpu = m[1]!.trim();
  } catch {
    // no /proc
  }
  let nproc = String(os.availableParallelism());
  try {
    nproc = execFileSync("nproc", { encoding: "utf8" }).trim();
  } catch {
    // keep Node's count
  }
  let capnp = "not installed";
  try {
    capnp = execFileSync("capnp", ["--version"], { encoding: "utf8" }).trim();
  } catch {
    // none
  }
  return [
    `- CPU: ${cpu}, nproc ${nproc}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    `- OS: ${os.type()} ${os.release()}`,
    `- Node ${process.version}; ${capnp}`,
    `- ${packages.map((p) => `${p} ${packageVersion(p)}`).join(", ")}`,
  ];
}

/** How to run this again: `npm run <script> -- args` when started by npm, else `npx tsx <file> args`. */
export function commandLine(argv: readonly string[], script: string, file: string): string {
  const args = argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(" ");
  if (process.env.npm_lifecycle_event === script) return args ? `npm run ${script} -- ${args}` : `npm run ${script}`;
  return `npx tsx ${file} ${args}`.trim();
}

/** Prints the results and writes them to `out`; a quick run (no `out`) writes nothing. */
export function publish(markdown: string, out: string | undefined): void {
  console.log("\n" + markdown);
  if (out !== undefined) {
    fs.writeFileSync(out, markdown);
    console.log(`wrote ${path.relative(process.cwd(), out) || out}`);
  } else {
    console.log("(--quick: results not written; pass --out FILE to keep them)");
  }
}

/** Where the section that starts with the line `heading` (e.g. "## Mesh") lies in `text`, up to the next "## " heading. */
function sectionBounds(text: string, heading: string): [number, number] | null {
  const at = text.startsWith(`${heading}\n`) ? 0 : text.indexOf(`\n${heading}\n`) + 1;
  if (at === 0 && !text.startsWith(`${heading}\n`)) return null;
  const next = text.indexOf("\n## ", at + heading.length);
  return [at, next < 0 ? text.length : next + 1];
}

/** The section of `file` under `heading`; "" if there is none. */
export function sectionOf(file: string, heading: string): string {
  const text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
  const bounds = sectionBounds(text, heading);
  return bounds === null ? "" : text.slice(...bounds);
}

/** Writes `section` (which starts with `heading`) into `file` in place of the section there, or at its end; the rest stays. */
export function writeSection(file: string, heading: string, section: string): void {
  const text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
  const body = `${section.trimEnd()}\n`;
  const bounds = sectionBounds(text, heading);
  const rest = bounds === null ? "" : text.slice(bounds[1]);
  const updated =
    bounds !== null
      ? text.slice(0, bounds[0]) + body + (rest === "" ? "" : `\n${rest}`)
      : text.trim() === ""
        ? body
        : `${text.trimEnd()}\n\n${body}`;
  fs.writeFileSync(file, updated);
}

function git(args: string[]): string | undefined {
  const r = spawnSync("git", ["--no-optional-locks", ...args], { cwd: ROOT, encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** Which code ran: the commit and the uncommitted changes under src/. */
export function sourceState(): string[] {
  const head = git(["log", "-1", "--oneline"]);
  if (head === undefined) return ["- Source: not a git checkout"];
  const changes = git(["status", "--short", "--", "src"]);
  const lines = [`- Source: \`${head}\``];
  if (changes === undefined || changes === "") lines.push("- src/: no uncommitted changes");
  else lines.push(`- src/: uncommitted changes: ${changes.split("\n").map((l) => `\`${l.trim()}\``).join(", ")}`);
  return lines;
}
