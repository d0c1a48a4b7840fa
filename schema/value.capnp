@0x91616ff9e7d1f627;
# Values, version 1: a dynamically typed value for generic interfaces (a
# closure's arguments and result, a plugin's configuration, the items of a
# value stream), the contract for implementations in any language.
#
# A Value is one of: null, a boolean, a 64-bit integer, a 64-bit float,
# text, bytes, a list of values, a record (named values in order), a
# capability, a stream, or an error. It is a tree: Cap'n Proto cannot express
# a cycle, and a writer must refuse a cyclic source value rather than unroll it.
#
# Limits. A receiver may refuse a value beyond any of these, and a writer
# should refuse to build one (capmesh does both, naming the limit and where
# in the value it was reached). They are the defaults of capmesh's
# implementation; both sides can lower them, and raising them only helps as
# far as the peer's own limits allow.
# - Nesting depth: at most 32 levels. Null, bool, int, float, text, bytes,
#   capability and stream have depth 0; a list or record has 1 + the largest
#   depth of its items (an empty one: 1); an error has 2 + its details' depth
#   (its details are two pointer hops away). Depth counts pointer hops: a list
#   or record level costs one (see `record`), so a 32-level value sits well
#   inside Cap'n Proto's default nesting limit of 64 pointers, with room for
#   the RPC message and the structs that carry it.
# - Items: at most 1,000,000 in one value, counting every list element and
#   every record field at every level (the top-level value itself is not an
#   item). This bounds the memory a receiver spends, whatever the shape.
# - Text and bytes: at most 32 MiB in one value, counting the UTF-8 bytes of
#   every text (record field names and error messages and codes included)
#   and every bytes value. Bulk data
#   belongs in a byte stream, not in a value.
# A message is also bounded by the transport (64 MiB and a read budget by
# default): a receiver applies those first.

struct Value {
  # One value, of one of the kinds below. Later versions may add kinds
  # (union members are appended compatibly); a reader refuses a kind it does
  # not know with an error naming it, rather than guess at its meaning.

  union {
    null @0 :Void;
    # No value. JavaScript's null and undefined both encode as null.

    bool @1 :Bool;

    int @2 :Int64;
    # An integer. Writers use int for integral numbers and float for the
    # rest; a language with one number type (JavaScript) cannot always tell
    # 1 from 1.0, so a reader that wants a number accepts both int and float.

    float @3 :Float64;
    # An IEEE 754 double, NaN, the infinities and -0 included.

    text @4 :Text;
    # UTF-8.

    bytes @5 :Data;

    list @6 :List(Value);

    record :group {
      # Named values in order: field i is names[i] = values[i]. Both lists
      # have the same length and the names are distinct (an empty name is a
      # name); a reader refuses a record that breaks either rule. The order is
      # the writer's and readers keep it where their language can.
      #
      # Two parallel lists rather than a list of (name, value) structs: a
      # field struct would cost a second pointer hop per level of nesting,
      # halving the depth a value can reach within Cap'n Proto's nesting
      # limit, and every field a struct header on the wire.
      names @7 :List(Text);
      values @8 :List(Value);
    }

    capability @9 :Capability;
    # Any capability. Its interface is not on the wire: the interface that
    # carries the value says what to expect (or the receiver asks the
    # capability itself).

    stream :group {
      # A stream of bytes or of values, as a capability.
      #
      # `cap` is a ByteSource (kind bytes) or a ValueSource (kind values),
      # defined with their flow control, cancellation and errors in
      # stream.capnp. The slot is an untyped capability so that this schema
      # does not depend on that one (a capability pointer carries no
      # interface id, so the bits are the same either way). A reader that
      # meets a kind it does not know treats the stream as an unknown value
      # kind.
      kind @10 :StreamKind;
      cap @11 :Capability;
    }

    error @12 :ErrorInfo;
    # An error carried as data (e.g. one item of a stream that failed),
    # not an RPC exception: the call that carried it succeeded.
  }
}

enum StreamKind {
  bytes @0;
  # Raw bytes, for files, pipes and sockets.
  values @1;
  # A sequence of Values.
}

struct ErrorInfo {
  message @0 :Text;
  # For people: what went wrong and, where it helps, what to do.

  code @1 :Text;
  # For programs: a short stable identifier chosen by the producer (e.g.
  # "ENOENT", "not-found", "timeout"); empty when there is none.

  details @2 :Value;
  # Anything else the producer wants to say, as a value; null (or an
  # unset pointer) when there is nothing. It counts toward the limits of the
  # value that holds the error.
}
