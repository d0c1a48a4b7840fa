// Plugin names (schema/mesh.capnp): 1 to 128 characters from [a-z0-9._-],
// starting with a letter or digit, so they are safe in paths, URLs and logs.

export const MAX_NAME_LENGTH = 128;
const NAME = /^[a-z0-9][a-z0-9._-]*$/;

/** Why `name` is not a valid plugin name, or null if it is. */
export function nameProblem(name: unknown): string | null {
  if (typeof name !== "string") return `a plugin name must be a string, got ${typeof name}`;
  if (name.length === 0) return "a plugin name cannot be empty";
  if (name.length > MAX_NAME_LENGTH) {
    return `a plugin name is at most ${MAX_NAME_LENGTH} characters; this one has ${name.length}`;
  }
  if (!NAME.test(name)) {
    const shown = name.length > 40 ? `${name.slice(0, 40)}…` : name;
    return `invalid plugin name ${JSON.stringify(shown)}: use lower-case letters, digits, ".", "_" and "-", starting with a letter or digit`;
  }
  return null;
}
