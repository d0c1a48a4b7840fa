import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["src/index.ts", "src/rpc/index.ts", "src/cli/main.ts"],
  format: ["esm"],
  dts: true,
  sourcemap: true,
  clean: true,
  target: "node20",
  splitting: true,
  // Error classes (and every other class) keep their names in the bundle:
  // users see SocketError, not _SocketError, in logs and err.constructor.name.
  keepNames: true,
});
