// Command-line flags of the bench runners: `--flag value` or `--flag=value`.

/**
 * Calls `handle(flag, value)` for each argument; `value()` takes the flag's
 * value (inline or the next argument) and reports a missing one with `usage`.
 */
export function eachFlag(argv: readonly string[], usage: (message?: string) => never, handle: (flag: string, value: () => string, arg: string) => void): void {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf("=");
    const [flag, inline] = eq >= 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) usage(`${flag} needs a value`);
      return v;
    };
    handle(flag, value, arg);
  }
}

/** A comma-separated list flag: each item must be one of `known` (named `what` in the error). */
export function listFlag<T extends string>(text: string, known: readonly T[], what: string, usage: (message?: string) => never): T[] {
  const items = text.split(",").filter(Boolean);
  for (const item of items) if (!(known as readonly string[]).includes(item)) usage(`unknown ${what} "${item}" (want ${known.join(", ")})`);
  return items as T[];
}

export function positiveNumber(text: string, flag: string, usage: (message?: string) => never): number {
  const n = Number(text);
  if (!(n > 0)) usage(`${flag} wants a positive number`);
  return n;
}

export function positiveInteger(text: string, flag: string, usage: (message?: string) => never): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) usage(`${flag} wants a positive integer`);
  return n;
}

/** The flags both runners take. */
export interface CommonFlags {
  seconds: number | undefined;
  repeat: number | undefined;
  transport: "unix" | "tcp" | "both";
  quick: boolean;
  out: string | undefined;
}

export function commonFlags(): CommonFlags {
  return { seconds: undefined, repeat: undefined, transport: "both", quick: false, out: undefined };
}

/** Takes a flag both runners share into `flags`; false if it is not one of them. */
export function takeCommonFlag(flags: CommonFlags, flag: string, value: () => string, usage: (message?: string) => never): boolean {
  switch (flag) {
    case "--seconds":
      flags.seconds = positiveNumber(value(), flag, usage);
      return true;
    case "--repeat":
      flags.repeat = positiveInteger(value(), flag, usage);
      return true;
    case "--transport": {
      const transport = value();
      if (transport !== "unix" && transport !== "tcp" && transport !== "both") usage("--transport wants unix, tcp or both");
      flags.transport = transport;
      return true;
    }
    case "--quick":
      flags.quick = true;
      return true;
    case "--out":
      flags.out = value();
      return true;
    case "--help":
    case "-h":
      usage();
  }
  return false;
}

export function transportsOf(flags: CommonFlags): ("unix" | "tcp")[] {
  return flags.transport === "both" ? ["unix", "tcp"] : [flags.transport];
}
