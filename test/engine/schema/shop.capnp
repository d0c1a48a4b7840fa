# Test schema for the engine's extension point (test/engine/engine.test.ts; generated with -I schema):
# an embedding service's own engine interface, extending capmesh's Engine.
@0x8613bb0c97b219ef;

using Engine = import "/engine.capnp";

interface ShopEngine extends(Engine.Engine) {
  price @0 (item :Text) -> (cents :UInt32);
}
