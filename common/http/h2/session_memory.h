#pragma once

// The memory functions the HTTP/2 codec gives nghttp2 (nghttp2_session_*_new3). nghttp2 allocates
// per stream and per frame: the stream, the outbound item of each frame it queues, the copy of a
// HEADERS frame's fields, a buffer per received field, a dynamic-table entry per indexed field.
// With the C library's malloc that is about six malloc/free pairs per request and side; these
// functions serve blocks of up to 4 KiB from the calling thread's free lists
// (common/base/free_list.h: per size class, bounded, no lock), so a worker's steady state reuses
// the blocks its earlier streams gave back. Larger blocks (the session, its frame buffers and
// header tables) come from operator new.
//
// Each block carries a 16-byte header naming its size class in front of what nghttp2 gets (free
// and realloc receive only the pointer), so results keep malloc's 16-byte alignment. A block may
// be freed on another thread than the one that allocated it: it joins that thread's list.

#include <nghttp2/nghttp2.h>

#include <cstddef>

namespace meshlet::http::h2 {

// Process-wide and immutable; its functions are thread-safe (each thread uses its own lists).
nghttp2_mem* RecyclingSessionMemory();

namespace codec_internal {
// The usable bytes of the block `p` (from RecyclingSessionMemory) belongs to: at least what was
// asked for. For tests.
size_t SessionBlockCapacity(const void* p);
}  // namespace codec_internal

}  // namespace meshlet::http::h2
