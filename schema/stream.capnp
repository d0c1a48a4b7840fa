@0xd4b17e1362a225bc;
# Streams, version 1: bytes and values delivered over capabilities with
# backpressure, the contract for implementations in any language.
#
# A stream is named by its source: a ByteSource or a ValueSource capability.
# It goes wherever a capability goes: in a call's params (the caller sends
# data), in its results (the callee sends data), in a Value (Value.stream,
# schema/value.capnp, kind bytes or values), and on to a third peer without
# touching the data.
#
# Reading. Whoever holds a source and wants its data makes a sink of its own
# and calls `source.pipeTo(sink)`. The producer then pushes to the sink:
# `write` calls, then exactly one of `end` or `abort`. Data always flows as
# calls from the producer to the consumer, whichever way the source itself
# travelled, so one flow-control mechanism serves both directions.
#
# Why push into a sink, and not a read() the consumer calls in a loop:
# `write` is a `-> stream` method, so Cap'n Proto's own flow control applies
# (the producer keeps a window of unacknowledged bytes and waits when it is
# full). A consumer applies backpressure simply by not returning from
# `write` until it has taken the data, which holds the producer within one
# window end to end; a pulled read() would cost a round trip per chunk or a
# prefetch protocol of its own. Why the consumer hands its sink to the
# source, rather than the producer being given a sink up front: the stream
# can then be returned in results, stored in a value, or handed on, and only
# the party that finally reads it decides when data starts moving.
#
# Rules for producers:
# - Nothing is sent before pipeTo. A source is read at most once: a second
#   pipeTo fails. A source released without pipeTo frees its data.
# - After `end` or `abort`, make no more calls to the sink.
# - A failed `write` (the consumer stopped reading, or went away) means stop:
#   free the data's resources, send nothing more.
# - pipeTo returns once `end` or `abort` has returned (the consumer has
#   seen the end, or the error). When the consumer cancels pipeTo, stop.
#
# Rules for consumers:
# - Return from `write` only when the data has been taken: that is the
#   backpressure. A consumer that stops reading fails the writes it holds
#   and later ones, and cancels pipeTo.
# - A sink released by the producer before `end` or `abort` (the producer
#   died, or its connection did) ends the stream in error: disconnected.
# - A failed pipeTo without `end` or `abort` ends the stream with its error.

using Value = import "value.capnp".Value;
using ErrorInfo = import "value.capnp".ErrorInfo;

interface ByteSink {
  # Where a producer pushes bytes (made by the consumer).

  write @0 (bytes :Data) -> stream;
  # The next bytes. Chunk boundaries carry no meaning: a producer may split
  # or join chunks as it likes (capmesh splits chunks into 64 KiB and joins
  # small ones, so a call carries less than 128 KiB).

  end @1 ();
  # The last call of a stream that completed. Returns once the consumer has
  # read everything before it.

  abort @2 (error :ErrorInfo);
  # The last call of a stream whose producer failed: the consumer's read
  # fails with this error (its message, and its code when set) once it has
  # read the data written before it. The code "disconnected" says that the
  # stream's own producer went away (a relay lost the stream it was
  # passing on): the consumer treats it as its own producer going away.
}

interface ByteSource {
  # A stream of bytes, read once by handing it a sink.

  pipeTo @0 (sink :ByteSink) -> ();
  # Starts the stream into `sink`; returns once `sink.end` or `sink.abort`
  # has returned, or fails if the producer could not deliver either.
}

interface ValueSink {
  # Where a producer pushes values (made by the consumer).

  write @0 (values :List(Value)) -> stream;
  # The next values, in order: a producer may send several per call (capmesh
  # joins up to 1,024, or about 64 KiB, of what its source yields in one
  # turn of its event loop or while the flow-control window is full). Each
  # value is bounded by value.capnp's limits on its own.

  end @1 ();
  # As ByteSink.end.

  abort @2 (error :ErrorInfo);
  # As ByteSink.abort.
}

interface ValueSource {
  # A stream of values, read once by handing it a sink.

  pipeTo @0 (sink :ValueSink) -> ();
  # As ByteSource.pipeTo.
}
