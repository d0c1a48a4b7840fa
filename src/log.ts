// Structured, quiet-by-default logging. Enable with DEBUG=capmesh:* (or a
// comma-separated list of namespaces such as capmesh:rpc,capmesh:transport).

type Fields = Record<string, unknown>;

function enabledFor(namespace: string): boolean {
  const spec = process.env.DEBUG ?? "";
  if (!spec) return false;
  return spec.split(/[\s,]+/).some((pattern) => {
    if (!pattern) return false;
    if (pattern.startsWith("-")) return false;
    const re = new RegExp("^" + pattern.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*") + "$");
    return re.test(namespace);
  });
}

export interface Logger {
  readonly enabled: boolean;
  debug(event: string, fields?: Fields): void;
  warn(event: string, fields?: Fields): void;
}

/**
 * Writes one structured line to stderr: always when `always` (lines a hub
 * prints for its plugins, src/engine/service.ts), else when DEBUG enables
 * `namespace`.
 */
export function writeLogLine(namespace: string, level: string, event: string, fields?: Fields, always = false): void {
  if (!always && !enabledFor(namespace)) return;
  const line = { t: new Date().toISOString(), ns: namespace, level, event, ...fields };
  process.stderr.write(JSON.stringify(line, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) + "\n");
}

export function logger(namespace: string): Logger {
  const enabled = enabledFor(namespace);
  const write = (level: string, event: string, fields?: Fields) => writeLogLine(namespace, level, event, fields, true);
  return {
    enabled,
    debug: (event, fields) => {
      if (enabled) write("debug", event, fields);
    },
    // Warnings are shown even when debug is off only if CAPMESH_WARN is not "0".
    warn: (event, fields) => {
      if (enabled || process.env.CAPMESH_WARN === "1") write("warn", event, fields);
    },
  };
}
