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
