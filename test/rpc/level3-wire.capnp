@0xd5a4f3c1b2e09871;
# Test-only: just enough of the rpc.capnp message layout, as Cap'n Proto's v2
# branch places it (commit 2c2709587d32475ff6b9e88385f460f45249a064), for
# `capnp decode` to read the Level 3 messages src/rpc/wire.ts writes. Field
# ordinals, types and union order decide the layout, so they follow v2;
# members these tests never decode are AnyPointer stand-ins that keep the
# union tags where v2 has them. The network parameters (AnyPointer in
# rpc.capnp) are typed with capmesh's own schema so their content prints.

using Net = import "../../schema/network.capnp";

struct Message {
  union {
    unimplemented @0 :AnyPointer;
    abort @1 :AnyPointer;
    call @2 :Call;
    return @3 :AnyPointer;
    finish @4 :AnyPointer;
    resolve @5 :Resolve;
    release @6 :AnyPointer;
    obsoleteSave @7 :AnyPointer;
    bootstrap @8 :AnyPointer;
    obsoleteDelete @9 :AnyPointer;
    provide @10 :Provide;
    accept @11 :Accept;
    join @12 :AnyPointer;
    disembargo @13 :Disembargo;
    thirdPartyAnswer @14 :AnyPointer;
  }
}

struct Call {
  questionId @0 :UInt32;
  target @1 :MessageTarget;
  interfaceId @2 :UInt64;
  methodId @3 :UInt16;
  params @4 :Payload;
  sendResultsTo :union {
    caller @5 :Void;
    yourself @6 :Void;
    thirdParty @7 :AnyPointer;
  }
  allowThirdPartyTailCall @8 :Bool = false;
}

struct Resolve {
  promiseId @0 :UInt32;
  union {
    cap @1 :CapDescriptor;
    exception @2 :AnyPointer;
  }
}

struct Provide {
  questionId @0 :UInt32;
  target @1 :MessageTarget;
  recipient @2 :Net.ThirdPartyToAwait;
}

struct Accept {
  questionId @0 :UInt32;
  provision @1 :Net.ThirdPartyCompletion;
  embargo @2 :Data;
  # v2: Data in pointer 1 (0.9.2 had a Bool at bit 32 here).
}

struct Disembargo {
  target @0 :MessageTarget;
  context :union {
    senderLoopback @1 :UInt32;
    receiverLoopback @2 :UInt32;
    accept @3 :Data;
    # v2: Data in pointer 1 (0.9.2: Void, and a fourth member `provide`).
  }
}

struct MessageTarget {
  union {
    importedCap @0 :UInt32;
    promisedAnswer @1 :PromisedAnswer;
  }
}

struct Payload {
  content @0 :AnyPointer;
  capTable @1 :List(CapDescriptor);
}

struct CapDescriptor {
  union {
    none @0 :Void;
    senderHosted @1 :UInt32;
    senderPromise @2 :UInt32;
    receiverHosted @3 :UInt32;
    receiverAnswer @4 :PromisedAnswer;
    thirdPartyHosted @5 :ThirdPartyCapDescriptor;
  }
  attachedFd @6 :UInt8 = 255;
}

struct PromisedAnswer {
  questionId @0 :UInt32;
  transform @1 :List(Op);
  struct Op {
    union {
      noop @0 :Void;
      getPointerField @1 :UInt16;
    }
  }
}

struct ThirdPartyCapDescriptor {
  id @0 :Net.ThirdPartyToContact;
  vineId @1 :UInt32;
}
