// The raw floor's wire protocol: frames of a u32 little-endian length and a
// payload whose first byte is the operation. Replies come back in request
// order, so neither side needs request ids.
//
//   PING  [0][u32 target][u32 n]               -> [0][u32 n at the root, else the target's depth]
//   NEXT  [1][u32 target][u32 newId][u32 depth] -> [1]
//   WRITE [2][chunk bytes]                     -> [2]        (one ack per chunk)
//   DONE  [3]                                  -> [3][u64 bytes written since the last DONE]
//
// Object 0 is the root (depth 0). NEXT makes object `newId` (chosen by the
// client, as Cap'n Proto question ids are) at `depth`; a chain object is
// dropped once it has been called, since each is used exactly once.
export const OP_PING = 0;
export const OP_NEXT = 1;
export const OP_WRITE = 2;
export const OP_DONE = 3;
