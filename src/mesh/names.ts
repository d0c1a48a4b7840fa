// Plugin names (schema/mesh.capnp): 1 to 128 characters from [a-z0-9._-],
// starting with a letter or digit, so they are safe in paths, URLs and logs.

export const MAX_NAME_LENGTH = 128;
const NAME = /^[a-z0-9][a-z0-9._-]*$/;
const NAME_CHAR = /[a-z0-9._-]/;
/** The grammar, as every refusal states it. */
export const NAME_GRAMMAR = `plugin names are 1 to ${MAX_NAME_LENGTH} characters from a-z, 0-9, ".", "_" and "-", starting with a letter or digit`;

/** Why `name` is not a valid plugin name (with the grammar), or null if it is. */
export function nameProblem(name: unknown): string | null {
  if (typeof name !== "string") return `a plugin name must be a string, got ${typeof name}; ${NAME_GRAMMAR}`;
  if (name.length <= MAX_NAME_LENGTH && NAME.test(name)) return null;
  // A long name is refused by its length alone, and shown cut short.
  let what: string;
  if (name.length === 0) what = "it is empty";
  else if (name.length > MAX_NAME_LENGTH) what = `it is ${name.length} characters long (at most ${MAX_NAME_LENGTH} characters)`;
  else if (/^[._-]/.test(name)) what = `it starts with ${JSON.stringify(name[0])}`;
  else what = `it contains ${JSON.stringify([...name].find((c) => !NAME_CHAR.test(c)))}`;
  const shown = name.length > 40 ? `${JSON.stringify(name.slice(0, 40)).slice(0, -1)}…"` : JSON.stringify(name);
  return `invalid plugin name ${shown}: ${what}; ${NAME_GRAMMAR}`;
}
