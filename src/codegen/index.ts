// The schema code generator. See generate.ts; cli.ts is the command line.
export { generate, outputPath, type GenerateOptions } from "./generate.js";
