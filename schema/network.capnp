@0xc316e8f703b163ca;
# The capmesh vat network's types for rpc.capnp Level 3 (three-party
# handoff). rpc.capnp leaves these "network-specific parameters" to each
# network; capmesh's are below. They travel in the AnyPointer fields of the
# rpc.capnp messages as laid out on Cap'n Proto's v2 branch (commit
# 2c2709587d32475ff6b9e88385f460f45249a064, c++/src/capnp/rpc.capnp):
#
#   ThirdPartyToContact   CapDescriptor.thirdPartyHosted.id   introducer -> recipient
#   ThirdPartyToAwait     Provide.recipient                   introducer -> host
#   ThirdPartyCompletion  Accept.provision                    recipient  -> host
#
# Roles: the introducer holds a capability hosted by another vat (the host)
# and passes it to a third vat (the recipient), which then talks to the host
# directly. A vat is an ed25519 key. Every connection is authenticated with
# the secret handshake (shs1) under the mesh's network key, so "the peer of a
# connection" is a proven key. Keys are 32 raw bytes here; logs and errors
# print them as "@<base64>.ed25519". Times are milliseconds since the Unix
# epoch.
#
# Level 1 is untouched: the v2 layout differs from Cap'n Proto 0.9.2's
# rpc.capnp only in Level 3 (Accept and Disembargo each gained a second
# pointer), so a 0.9.2 peer still interoperates as long as it never sees a
# Level 3 message. Hence the first rule.
#
# Rules another implementation follows to take part:
#
# - Advertising. A vat introduces only peers that said they take part: the
#   mesh Hello feature "direct-paths", or the addresses in a
#   ThirdPartyCompletion they presented. It never sends Provide, Accept, a
#   Level 3 Disembargo or a thirdPartyHosted descriptor to any other peer;
#   those peers get the capability proxied by the introducer, as in Level 1.
#   It never introduces a vat to itself (same key on both sides).
#
# - Single use. A contact is bound to the one recipient named in the
#   ThirdPartyToAwait and may be accepted once; contacts are not forwardable.
#   A vat that must pass on a capability it has not yet accepted either
#   accepts it first or proxies it.
#
# - The vine. The introducer exports a fresh capability (the vine, never a
#   promise) for each handoff and names it in thirdPartyHosted.vineId. A
#   recipient that does not accept simply calls the vine; one that accepts
#   releases the vine once its Accept has returned.
#
# - Provide. Its question ID has bit 31 set (the introducer draws Provide
#   IDs from the upper half so they never collide with ordinary questions).
#   It gets no Return. The introducer sends Finish for it when the vine's
#   last reference is released.
#
# - Accept. Sent by the recipient over its own connection to the host (a live
#   one authenticated as the host's key, or a new one dialled expecting that
#   key). The host's Return carries the capability itself as
#   results.content: a capability pointer to cap table entry 0.
#
# - 3PH embargo. When the capability replaced a promise on which the
#   recipient had already made calls, those calls are still travelling
#   through the introducer. The recipient then picks 16 random bytes, sends
#   Disembargo{target = the vine, context.accept = bytes} to the introducer,
#   and puts the same bytes in Accept.embargo. The introducer forwards the
#   Disembargo to the host with target promisedAnswer{questionId = the
#   Provide's ID, no transform}, behind everything it forwarded earlier. The
#   host returns the Accept only after that Disembargo arrived, in whichever
#   order the two arrive. A null Accept.embargo means no embargo; any
#   non-null value (even empty) asks for one. Embargo IDs longer than 64
#   bytes are refused.
#
# - Refusals. The host answers an Accept it cannot honour with a Return
#   exception whose reason names why (malformed, forged, replayed, expired,
#   misdirected, no matching Provide in time); nothing else on either
#   connection changes, and the provision stays open for its rightful
#   recipient. A Provide it refuses (bounds, malformed) is recorded and the
#   refusal is reported to the matching Accept, since a Provide has no
#   Return.
#
# - Call forwarding (Call.sendResultsTo.thirdParty, Return.awaitFromThirdParty,
#   Message.thirdPartyAnswer) is answered as unimplemented.
#
# Where the v2 branch's rpc.capnp text and its rpc.c++ code disagree, capmesh
# follows the code; each such point, and what we do:
#
#   1. Disembargo target. The text's example sends the recipient's Disembargo
#      to the promise the capability replaced; the code sends it to the vine
#      (importedCap = vineId). We send it to the vine and accept only a vine
#      there.
#   2. Disembargo/Accept order. The text's example sends the Accept first;
#      the code sends the Disembargo first, before even connecting to the
#      host. We send it first too; as host we accept either order.
#   3. When the Provide is closed. The text says the introducer may close the
#      Provide on the first Call or Release that reaches the vine; the code
#      only does so when the vine's reference count drops to zero (calls on
#      the vine are forwarded and leave the Provide open). We close only on
#      Release.
#   4. Introduction call shape. The text sketches an introduce operation on
#      the connection that will carry the Provide, returning both values;
#      the code calls it on the recipient's connection, passing the host's,
#      and fills two builders. Our VatNetwork follows the code's shape.
#   5. Rendezvous at the host. The text sketches two symmetric operations
#      that each hand over a value; the code registers the Provide (the
#      registration lives until dropped) and lets the Accept wait for the
#      registered value. Our VatNetwork follows the code.
#   6. Call forwarding. Documented in the text, reverted in the code. We
#      answer it as unimplemented (see Rules).
#   7. Omitting the embargo ID. The text lets a network without forwarding
#      leave the embargo ID out; the code lets it return an empty ID and
#      treats any non-null Accept.embargo as a request for an embargo. We
#      always send 16 random bytes and treat any non-null value as a
#      request.
#   8. Provide question IDs. The text only says a Provide gets no Return;
#      the code takes its IDs from the range with bit 31 set. So do we.

struct ThirdPartyToContact {
  # What the recipient needs to collect the capability from its host.
  # Written by the introducer for one recipient; not forwardable.

  host @0 :Data;
  # The host's ed25519 public key (32 bytes). The recipient reuses a live
  # connection authenticated as this key, or dials expecting exactly this
  # key (the handshake fails with any other).

  addresses @1 :List(Text);
  # Where the host listens for direct connections, most preferred first, as
  # the host advertised them to the introducer: "unix:/path" (same machine,
  # not encrypted) or "tcp://host:port" (box-stream). At most 16 entries of
  # at most 1024 bytes each.

  nonce @2 :Data;
  # 32 random bytes naming this handoff; the same value appears in
  # ThirdPartyToAwait and ThirdPartyCompletion. Unique per introducer and
  # unguessable: it is what ties the Accept to its Provide.

  expiresAt @3 :UInt64;
  # The host refuses an Accept arriving after this time. A recipient that
  # cannot accept by then keeps using the vine.
}

struct ThirdPartyToAwait {
  # What the host needs to recognise the recipient's Accept. The introducer
  # sends it in Provide.recipient over its own authenticated connection to
  # the host; that connection's key is the provision's introducer.

  recipient @0 :Data;
  # The ed25519 key (32 bytes) of the only vat allowed to accept. Its Accept
  # must arrive over a connection authenticated as this key.

  nonce @1 :Data;
  # The same as ThirdPartyToContact.nonce.

  expiresAt @2 :UInt64;
  # The same as ThirdPartyToContact.expiresAt. The host may shorten it to its
  # own maximum and allows a small clock skew on top.
}

struct ThirdPartyCompletion {
  # What the recipient presents to the host in Accept.provision.

  introducer @0 :Data;
  # Key of the vat the contact came from: the recipient's authenticated peer
  # on the connection that carried the thirdPartyHosted descriptor. The host
  # checks it against the connection the Provide arrived on.

  host @1 :Data;
  # The host key from the contact. A vat that is not this host refuses the
  # Accept at once (misdirected).

  nonce @2 :Data;
  # The nonce from the contact.

  addresses @3 :List(Text);
  # Where the recipient itself listens for direct connections (may be
  # empty), so that the host, later acting as introducer, can hand the
  # recipient's own capabilities on. Presenting this is also the recipient's
  # Level 3 advertisement on this connection.
}

# Call causes: capmesh's one addition to rpc.capnp Level 1 (not Level 3;
# docs/design/call-causes.md, src/rpc/wire.ts CALL_CAUSES_POINTER).
#
#   Call pointer 7 :List(UInt64)   the call's causes
#
# rpc.capnp's Call uses pointers 0-2 (target, params,
# sendResultsTo.thirdParty). A capmesh vat widens the Call struct to 8
# pointers, pointers 3-6 null, only when the call has causes: the turn
# tokens (random 64-bit values) of the running sequential calls (actors,
# src/rpc/sequential.ts) the call was made on behalf of, innermost first, at
# most 64. Every other Call is rpc.capnp's, byte for byte. Readers that do
# not know pointer 7 (the C++ reference, any other implementation) skip it,
# and drop the causes when they call on. A receiver that knows it:
#
# - runs the call's target on behalf of those causes: every call the
#   target's code makes, and the call itself when forwarded to another vat,
#   carries them on (with the tokens of its own running sequential calls);
# - fails the call (Return exception, type failed) when it arrives at a
#   sequential capability whose running call's token is among its causes:
#   that call is waiting, through other vats, for this one (re-entry);
# - fails the call, not the connection, when the list holds more than 64
#   tokens;
# - ignores pointer 7 (as if absent) when it is null, empty, or anything but
#   a list of 8-byte elements.
#
# Tokens name nothing outside the vat that made them; a peer that forges
# one can only make its own call fail.
