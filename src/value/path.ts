// Where in a value something is, written the way JavaScript would reach it:
// value.a.b[3], value["odd key"]. Paths are built only when an error needs
// one: converters keep the keys of the open containers on a stack.

/** One step down: a record field name or a list index. */
export type PathStep = string | number;

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `value` followed by `steps`, e.g. value.a["b c"][3]. */
export function formatPath(steps: readonly PathStep[], count = steps.length): string {
  let out = "value";
  for (let i = 0; i < count; i++) {
    const s = steps[i]!;
    if (typeof s === "number") out += `[${s}]`;
    else if (IDENTIFIER.test(s)) out += `.${s}`;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}
