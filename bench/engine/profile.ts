// The functions with the most self time in V8 CPU profiles (node --cpu-prof):
// what `bench:engine -- --profile DIR` prints per process. A process writes
// one profile per thread (tsx's loader runs in a thread of its own); the
// largest is the main thread's, and that is the one summarised.
import fs from "node:fs";
import path from "node:path";
import { ROOT } from "../lib/processes.js";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function where(url: string, line: number): string {
  if (url === "") return "";
  let file = url.replace(/^file:\/\//, "");
  const root = ROOT.replace(/\/$/, "");
  file = file.startsWith(root) ? file.slice(root.length + 1) : file;
  // Code tsx compiled reports line 0 for every function (its output is not line for line): the file alone then.
  return ` ${file.replace(/^.*node_modules\//, "node_modules/")}${line > 0 ? `:${line + 1}` : ""}`;
}

/** Lines: the profile's span and CPU share, then the top `count` functions by self time, with their share of it. */
export function summarizeProfiles(dir: string, who: string, count: number): string[] {
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith(".cpuprofile")) : [];
  if (files.length === 0) return [`${who}: no profile in ${dir}`];
  const main = files.map((f) => path.join(dir, f)).sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0]!;
  const profile = JSON.parse(fs.readFileSync(main, "utf8")) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]!);
    const dt = profile.timeDeltas[i] ?? 0;
    if (node === undefined) continue;
    total += dt;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === "(idle)") idle += dt;
    const key = `${functionName || "(anonymous)"}${where(url, lineNumber)}`;
    self.set(key, (self.get(key) ?? 0) + dt);
  }
  const busy = total - idle;
  const top = [...self.entries()].filter(([k]) => !k.startsWith("(idle)")).sort((a, b) => b[1] - a[1]).slice(0, count);
  return [
    `${who}: ${path.basename(main)}: ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s not idle; top self time (% of not idle):`,
    ...top.map(([k, us]) => `  ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(6)} ms  ${k}`),
  ];
}
