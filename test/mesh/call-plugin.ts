// A plugin process for the `capmesh call` tests: joins the hub named by the
// CAPMESH_* environment and registers argv[2] serving the interop tests'
// TestService (Int64, Data, enums, capabilities in results, failures, a call
// that hangs). It passes no `interfaces` and no schema: joinMesh publishes
// them from the generated TestService it provides.
import { joinMesh } from "../../src/mesh/join.js";
import { TestService } from "../interop/schema/interop.js";
import { TestServiceImpl } from "../interop/test-service.js";

const name = process.argv[2]!;
const peer = await joinMesh({
  name,
  provide: TestService.server(new TestServiceImpl()),
  info: { version: "2.0.0", description: "capmesh call test plugin" },
});
console.log(`registered ${name} as ${peer.id}`);
