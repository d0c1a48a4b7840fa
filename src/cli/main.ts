#!/usr/bin/env node
// The capmesh command line.
const HELP = `capmesh — a plugin mesh on Cap'n Proto capability RPC

usage: capmesh <command> [options]

commands:
  demo                      run the mesh demo (npm start, in a checkout): a hub,
                            plugins and a client, each its own process
  gen [options] <schema.capnp>...
                            generate TypeScript (or, with --js, JavaScript) for
                            schemas (needs the capnp tool; gen --help for options)
  keygen [FILE] [--force]   create an ed25519 identity (key file, mode 0600) and
                            print its id; FILE defaults to ~/.capmesh/secret
                            ($CAPMESH_HOME/secret when set)
  serve [options]           run a mesh hub on embedded defaults (serve --help)
  ls [--json]               list the plugins registered with the hub
  watch [--json]            print plugins as they join and leave
  call <name> [<method> [JSON]]
                            call a plugin's method with JSON params and print
                            the results as JSON; without a method, list its
                            methods (no generated code needed; call --help)
  id [FILE]                 print the id (@<base64>.ed25519) of a key file
  netkey                    print a new random network key (base64), for a mesh
                            that must not meet others
  help                      show this help

Exit codes: 0 ok, 1 a failed call, 2 usage, 3 the hub cannot be reached.
Set DEBUG=capmesh:* for structured debug logs on stderr.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "demo": {
      const { demo } = await import("./demo.js");
      return demo(rest);
    }
    case "gen": {
      // Generated code imports from the "capmesh" package unless --runtime says otherwise.
      const { runCli } = await import("../codegen/cli.js");
      return runCli(rest);
    }
    case "serve":
      return (await import("./mesh.js")).serve(rest);
    case "ls":
      return (await import("./mesh.js")).ls(rest);
    case "watch":
      return (await import("./mesh.js")).watch(rest);
    case "call":
      return (await import("./call.js")).call(rest);
    case "keygen":
      return (await import("./identity.js")).keygen(rest);
    case "id":
      return (await import("./identity.js")).id(rest);
    case "netkey":
      return (await import("./identity.js")).netkey(rest);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(HELP);
      return command === undefined ? 2 : 0;
    default:
      console.error(`capmesh: unknown command ${JSON.stringify(command)}\n\n${HELP}`);
      return 2;
  }
}

process.exitCode = await main(process.argv.slice(2));
