#include "common/http/h1/codec.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/base/attributes.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/types/span.h"
#include "common/base/logging.h"
#include "common/http/ascii_case.h"

namespace meshlet::http::h1 {
namespace {

using Action = ParserVisitor::Action;

constexpr char kNoBytes[1] = "";

constexpr uint64_t kEveryByte = 0x0101010101010101ULL;  // times a byte: that byte in each lane

// True when some byte of the 8-byte word `w` is below `n` (n <= 128). Exact, no false positives:
// a borrow crosses into the next byte only from a byte that was below `n` itself.
constexpr bool HasByteBelow(uint64_t w, uint8_t n) {
  return ((w - kEveryByte * n) & ~w & (kEveryByte * 0x80)) != 0;
}
constexpr bool HasZeroByte(uint64_t w) { return HasByteBelow(w, 1); }

uint64_t LoadWord(const char* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof(w));
  return w;
}

// Whether `word_has` finds something in the `n` bytes at `p`, read as 8-byte words; the last word
// overlaps its predecessor instead of leaving a tail. Below 8 bytes, `byte_is` tests each byte.
template <typename WordHas, typename ByteIs>
bool AnyWordHas(const char* p, size_t n, WordHas word_has, ByteIs byte_is) {
  if (n < 8) {
    for (; n > 0; ++p, --n) {
      if (byte_is(static_cast<unsigned char>(*p))) return true;
    }
    return false;
  }
  for (; n > 8; p += 8, n -= 8) {
    if (word_has(LoadWord(p))) return true;
  }
  return word_has(LoadWord(p + n - 8));
}

bool IsLineBreakOrNul(unsigned char c) { return c == '\r' || c == '\n' || c == '\0'; }

// CR, LF or NUL somewhere in `s`: this runs over every field written. Sixteen bytes at a time
// where SSE2 is there (values such as traceparent, 55 bytes, take four steps), else eight.
bool HasLineBreakOrNul(absl::string_view s) {
  const char* p = s.data();
  size_t n = s.size();
#if defined(__SSE2__)
  if (n >= 16) {
    const __m128i cr = _mm_set1_epi8('\r');
    const __m128i lf = _mm_set1_epi8('\n');
    const __m128i nul = _mm_setzero_si128();
    auto found = [&](const char* q) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
      const __m128i hits = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)),
                                        _mm_cmpeq_epi8(v, nul));
      return _mm_movemask_epi8(hits) != 0;
    };
    for (; n > 16; p += 16, n -= 16) {
      if (found(p)) return true;
    }
    return found(p + n - 16);  // the last 16 bytes, overlapping what was checked
  }
#endif
  return AnyWordHas(
      p, n,
      [](uint64_t w) {
        return HasZeroByte(w) || HasZeroByte(w ^ ('\r' * kEveryByte)) ||
               HasZeroByte(w ^ ('\n' * kEveryByte));
      },
      IsLineBreakOrNul);
}

// Bytes a field name never contains on the wire: CR, LF, NUL, ':', SP, HTAB.
bool IsBadNameByte(unsigned char c) {
  return IsLineBreakOrNul(c) || c == ':' || c == ' ' || c == '\t';
}

// Bytes that would end a line or truncate it: never written, whatever the HeaderMap holds,
// because a value that smuggles CRLF splits the message.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool SafeField(absl::string_view name,
                                                   absl::string_view value) {
  if (name.empty()) return false;
  // Every bad name byte is below '-' (0x2d) or is ':'. Names are letters, digits and '-', so one
  // test per word clears them; a name it flags is looked at byte by byte.
  const bool suspect = AnyWordHas(
      name.data(), name.size(),
      [](uint64_t w) { return HasByteBelow(w, '-') || HasZeroByte(w ^ (':' * kEveryByte)); },
      [](unsigned char c) { return c < '-' || c == ':'; });
  if (suspect && std::any_of(name.begin(), name.end(),
                             [](char c) { return IsBadNameByte(static_cast<unsigned char>(c)); })) {
    return false;
  }
  return !HasLineBreakOrNul(value);
}

// Hop-by-hop and framing fields the codec writes itself (names are lowercase in a HeaderMap).
bool IsManagedField(absl::string_view name) {
  if (name == "content-length") return true;
  return name != "te" && HeaderMap::IsHopByHopName(name);
}

bool SkipInResponse(absl::string_view name) { return IsManagedField(name) || name == "te"; }
bool SkipInTrailers(absl::string_view name) {
  return IsManagedField(name) || name == "te" || name == "host" || name == "trailer";
}

// Strict 1*DIGIT; false if absent or malformed (the message is then framed another way).
bool ContentLengthOf(const HeaderMap& headers, uint64_t* length) {
  std::optional<absl::string_view> v = headers.Get("content-length");
  if (!v.has_value() || v->empty() || v->size() > 19) return false;
  uint64_t n = 0;
  for (char c : *v) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  *length = n;
  return true;
}

// The :status as an int in 100..999, or 0.
int StatusOf(const HeaderMap& headers) {
  std::optional<absl::string_view> v = headers.Get(":status");
  if (!v.has_value() || v->size() != 3) return 0;
  int code = 0;
  for (char c : *v) {
    if (c < '0' || c > '9') return 0;
    code = code * 10 + (c - '0');
  }
  return code >= 100 ? code : 0;
}

bool HasConnectionToken(const HeaderMap& headers, absl::string_view token) {
  for (absl::string_view value : headers.GetAll("connection")) {
    for (absl::string_view t : absl::StrSplit(value, ',')) {
      if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(t), token)) return true;
    }
  }
  return false;
}

bool MethodExpectsBody(absl::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH";
}

absl::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 103:
      return "Early Hints";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 417:
      return "Expectation Failed";
    case 421:
      return "Misdirected Request";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "";
  }
}

// Decimal digits of `v` written at the end of `buf`; returns the view.
absl::string_view FormatDecimal(uint64_t v, char (&buf)[20]) {
  char* p = buf + sizeof(buf);
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  return absl::string_view(p, buf + sizeof(buf) - p);
}

absl::string_view FormatHex(uint64_t v, char (&buf)[20]) {
  static constexpr char kDigits[] = "0123456789abcdef";
  char* p = buf + sizeof(buf);
  do {
    *--p = kDigits[v & 0xf];
    v >>= 4;
  } while (v != 0);
  return absl::string_view(p, buf + sizeof(buf) - p);
}

// A header block is copied into one reservation at the output's tail, so it costs one
// contiguous copy and no allocation per field. The reservation is sized from an estimate
// (EstimateBlock); a block that does not fit is emitted again in two passes, one that sizes it
// and one that copies it.
// Each sink also takes a whole field, "name: value\r\n", with one size check.
struct SizeSink {
  size_t size = 0;
  void operator()(absl::string_view s) { size += s.size(); }
  void Field(absl::string_view name, absl::string_view value) {
    size += name.size() + value.size() + 4;
  }
};
// Where there is room for it (`p` has name.size() + value.size() + 4 bytes).
inline char* PutField(char* p, absl::string_view name, absl::string_view value) {
  std::memcpy(p, name.data(), name.size());
  p += name.size();
  p[0] = ':';
  p[1] = ' ';
  p += 2;
  if (!value.empty()) std::memcpy(p, value.data(), value.size());
  p += value.size();
  p[0] = '\r';
  p[1] = '\n';
  return p + 2;
}
struct CopySink {
  char* p;
  void operator()(absl::string_view s) {
    if (!s.empty()) std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  void Field(absl::string_view name, absl::string_view value) { p = PutField(p, name, value); }
};
// Copies while there is room; past the end it only records the overflow.
struct BoundedSink {
  char* p;
  char* end;
  bool overflow = false;
  void operator()(absl::string_view s) {
    if (overflow || s.size() > static_cast<size_t>(end - p)) {
      overflow = true;
      return;
    }
    if (!s.empty()) std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  void Field(absl::string_view name, absl::string_view value) {
    if (overflow || name.size() + value.size() + 4 > static_cast<size_t>(end - p)) {
      overflow = true;
      return;
    }
    p = PutField(p, name, value);
  }
};

// Room for the fields of `headers` written as "name: value\r\n", plus `extra` bytes for the
// start line and the fields the codec adds.
size_t EstimateBlock(const HeaderMap& headers, size_t extra) {
  return headers.ByteSize() + 4 * headers.size() + extra;
}
// Start line, framing and connection fields, final CRLF (besides values counted separately).
constexpr size_t kBlockOverhead = 192;

template <typename Emit>
void WriteBlock(net::Buffer& out, size_t estimate, Emit&& emit) {
  absl::Span<char> space = out.Reserve(estimate);
  BoundedSink fast{space.data(), space.data() + space.size()};
  emit(fast);
  if (!fast.overflow) {
    out.Commit(static_cast<size_t>(fast.p - space.data()));
    return;
  }
  out.Commit(0);
  SizeSink sizer;
  emit(sizer);
  space = out.Reserve(sizer.size);
  CopySink copier{space.data()};
  emit(copier);
  out.Commit(static_cast<size_t>(copier.p - space.data()));
}

template <typename Sink, typename Skip>
void EmitFields(const HeaderMap& headers, Skip skip, Sink& sink) {
  headers.ForEachRegularWithTrust([&](HeaderView h, bool trusted) {
    if (skip(h.name) || (!trusted && !SafeField(h.name, h.value))) return;
    sink.Field(h.name, h.value);
  });
}

template <typename Sink>
void EmitStatusLine(int status, Sink& sink) {
  char digits[3] = {static_cast<char>('0' + status / 100),
                    static_cast<char>('0' + status / 10 % 10),
                    static_cast<char>('0' + status % 10)};
  sink("HTTP/1.1 ");
  sink(absl::string_view(digits, 3));
  sink(" ");
  sink(ReasonPhrase(status));
  sink("\r\n");
}

}  // namespace

uint64_t CodecCounters::ProtocolErrorsWithStatus(int status) const {
  uint64_t total = 0;
  for (size_t i = 1; i < kParserErrorCount; ++i) {
    if (HttpStatusForError(static_cast<ParserError>(i)) == status) {
      total += protocol_errors_by_error[i];
    }
  }
  return total;
}

namespace codec_internal {

// ---------------------------------------------------------------------------------------------
// CodecBase

CodecBase::CodecBase(event::Loop& loop, CodecIo& io, Parser::Type type, const CodecOptions& options)
    : loop_(loop),
      io_(io),
      options_(options),
      counters_(options.counters != nullptr ? options.counters : &own_counters_),
      parser_(type, this, options.limits),
      stream_(*this),
      resume_timer_(loop, [this] { OnResumeTimer(); }) {}

CodecBase::~CodecBase() = default;

void CodecBase::ActiveStream::AddCallbacks(StreamCallbacks& callbacks) {
  codec_.callbacks_.push_back(&callbacks);
  // A stream born while the connection is backed up starts out paused.
  if (codec_.above_high_watermark_ && codec_.stream_active_) {
    callbacks.OnAboveWriteBufferHighWatermark();
  }
}

void CodecBase::ActiveStream::RemoveCallbacks(StreamCallbacks& callbacks) {
  auto& list = codec_.callbacks_;
  auto it = std::find(list.begin(), list.end(), &callbacks);
  if (it != list.end()) list.erase(it);
}

absl::Status CodecBase::DispatchImpl(net::Buffer& data) {
  if (closed_) {
    data.Clear();
    return error_;
  }
  absl::Status status;
  if (pending_input_.empty()) {
    status = Process(data);
    if (!data.empty()) {
      if (closed_) {
        data.Clear();
      } else {
        pending_input_.Move(data);
      }
    }
  } else {
    pending_input_.Move(data);
    status = Process(pending_input_);
  }
  UpdateInputHold();
  return status;
}

absl::Status CodecBase::Process(net::Buffer& in) {
  processing_ = true;
  messages_this_pass_ = 0;
  absl::Status status = ProcessLoop(in);
  processing_ = false;
  if (closed_) in.Clear();
  return status;
}

absl::Status CodecBase::ProcessLoop(net::Buffer& in) {
  while (!closed_) {
    if (stream_read_disabled_ > 0 || !ReadyForInput()) break;
    if (!stream_active_ && !head_in_progress_ && !in.empty() &&
        messages_this_pass_ >= options_.max_messages_per_pass) {
      ScheduleResume();  // the rest of the burst next turn; held input stops reading meanwhile
      break;
    }
    if (tunnel_ && parser_.status() == Parser::Status::kUpgraded) {
      if (in.empty() || !stream_active_) break;
      body_buffer_.Move(in);
      decoder_->DecodeData(body_buffer_, false);
      body_buffer_.Clear();
      continue;
    }
    switch (parser_.status()) {
      case Parser::Status::kOk:
        break;
      case Parser::Status::kPaused:
        parser_.Resume();
        break;
      case Parser::Status::kClosed:
        // The last message said the connection ends: whatever follows is not read.
        in.Clear();
        return absl::OkStatus();
      case Parser::Status::kUpgraded:
        // A tunnel that is not (or no longer) open: the input stays held.
        return absl::OkStatus();
      case Parser::Status::kError:
        return error_;
    }
    absl::string_view slice = in.FrontSlice();
    // Resuming after a pause may have no bytes left; the parser's scans still want a real
    // pointer (memchr on null is undefined even for length 0).
    if (slice.data() == nullptr) slice = absl::string_view(kNoBytes, 0);
    event_ = Event::kNone;
    slice_begin_ = slice.data();
    size_t consumed = parser_.Execute(slice);
    if (event_ == Event::kBody) {
      // Body bytes are relinked out of the input, not copied: the parser stopped right after
      // them, so nothing points into the moved blocks any more.
      in.Drain(body_offset_);
      body_buffer_.Move(in, body_length_);
      in.Drain(consumed - body_offset_ - body_length_);
    } else {
      in.Drain(consumed);
    }
    if (parser_.status() == Parser::Status::kError) return OnParseError(parser_.error());
    switch (event_) {
      case Event::kNone:
        if (in.empty() || consumed == 0) return absl::OkStatus();
        break;
      case Event::kHeaders: {
        absl::Status status = OnHeadersEvent();
        if (!status.ok()) return status;
        break;
      }
      case Event::kBody:
        DeliverBody();
        break;
      case Event::kMessageComplete:
        if (swallow_message_complete_) {
          swallow_message_complete_ = false;
        } else if (stream_active_) {
          OnMessageCompleteEvent();
        }
        break;
    }
  }
  return closed_ ? error_ : absl::OkStatus();
}

void CodecBase::OnResumeTimer() {
  if (closed_) return;
  absl::Status status = Process(pending_input_);
  UpdateInputHold();
  if (status.ok() && pending_input_.empty()) (void)MaybeHandleEof();
}

void CodecBase::ScheduleResume() {
  if (closed_ || resume_timer_.enabled()) return;
  resume_timer_.Enable(Duration::zero());
}

void CodecBase::UpdateInputHold() {
  if (io_closed_) return;
  bool hold = !pending_input_.empty();
  if (hold == input_hold_) return;
  input_hold_ = hold;
  io_.ReadDisable(hold);
}

absl::Status CodecBase::EndOfStreamImpl() {
  if (closed_ || remote_eof_) return error_;
  remote_eof_ = true;
  // Held input goes first; the end is handled once it has been delivered.
  if (!pending_input_.empty() || processing_) return absl::OkStatus();
  return MaybeHandleEof();
}

absl::Status CodecBase::MaybeHandleEof() {
  if (!remote_eof_ || eof_handled_ || closed_ || !pending_input_.empty()) {
    return absl::OkStatus();
  }
  if (stream_read_disabled_ > 0) return absl::OkStatus();
  eof_handled_ = true;
  return OnEofEvent();
}

void CodecBase::ConnectionClosedImpl() {
  closed_ = true;
  io_closed_ = true;
  input_hold_ = false;
  resume_timer_.Disable();
  pending_input_.Clear();
  ResetStreamCallbacks(StreamResetReason::kConnectionTermination, TerminationDetail());
}

Action CodecBase::OnHeader(absl::string_view name, absl::string_view value) {
  scratch_.Add(name, value);
  return Action::kContinue;
}

Action CodecBase::OnHeadersComplete(const MessageInfo&) {
  head_in_progress_ = false;
  event_ = Event::kHeaders;
  return Action::kPause;
}

Action CodecBase::OnBody(absl::string_view data) {
  event_ = Event::kBody;
  body_offset_ = static_cast<size_t>(data.data() - slice_begin_);
  body_length_ = data.size();
  return Action::kPause;
}

Action CodecBase::OnTrailer(absl::string_view name, absl::string_view value) {
  have_trailers_ = true;
  scratch_.Add(name, value);
  return Action::kContinue;
}

Action CodecBase::OnMessageComplete() {
  event_ = Event::kMessageComplete;
  return Action::kPause;
}

HeaderMapPtr CodecBase::TakeHeaders() {
  // Copying the warm scratch map sizes the new map's storage in one allocation instead of growing
  // it field by field; the scratch keeps its capacity. The spare room takes what a proxy adds
  // (x-request-id, x-forwarded-for/-proto, ...) without a second allocation.
  constexpr size_t kSpareBytes = 160;
  auto map = std::make_unique<HeaderMap>();
  map->ReserveBytes(scratch_.ByteSize() + kSpareBytes);
  *map = scratch_;
  scratch_.Clear();
  return map;
}

void CodecBase::DeliverBody() {
  in_body_received_ += body_length_;
  const MessageInfo& info = parser_.message_info();
  bool end = info.framing == BodyFraming::kContentLength &&
             in_body_received_ == info.content_length && !tunnel_;
  if (stream_active_ && !in_end_delivered_) {
    if (end) {
      DeliverLast([this](StreamDecoder& decoder) { decoder.DecodeData(body_buffer_, true); });
    } else {
      decoder_->DecodeData(body_buffer_, false);
    }
  }
  body_buffer_.Clear();
}

void CodecBase::DeliverMessageEnd() {
  if (!stream_active_ || in_end_delivered_) return;
  if (have_trailers_) {
    have_trailers_ = false;
    HeaderMapPtr trailers = TakeHeaders();
    DeliverLast([&](StreamDecoder& decoder) { decoder.DecodeTrailers(std::move(trailers)); });
  } else {
    body_buffer_.Clear();
    DeliverLast([this](StreamDecoder& decoder) { decoder.DecodeData(body_buffer_, true); });
  }
}

void CodecBase::BeginStream(StreamDecoder* decoder) {
  stream_active_ = true;
  decoder_ = decoder;
  callbacks_.clear();
  stream_read_disabled_ = 0;
  tunnel_ = false;
  in_message_done_ = false;
  in_end_delivered_ = false;
  in_body_received_ = 0;
  out_headers_sent_ = false;
  out_complete_ = false;
  out_framing_ = OutFraming::kNone;
  out_remaining_ = 0;
  out_bytes_written_ = 0;
}

void CodecBase::WriteOut() {
  if (out_.empty()) return;
  out_bytes_written_ += out_.length();
  if (io_closed_) {
    out_.Clear();
    return;
  }
  io_.Write(out_);
}

void CodecBase::EncodeDataImpl(net::Buffer& data, bool end_stream) {
  if (!stream_active_ || !out_headers_sent_ || out_complete_) {
    data.Clear();
    return;
  }
  switch (out_framing_) {
    case OutFraming::kNone:
      data.Clear();
      break;
    case OutFraming::kContentLength: {
      uint64_t n = data.length();
      if (n > out_remaining_) {
        LOG_EVERY_N_SEC(WARN, 1) << "h1: body longer than its content-length; excess dropped";
        n = out_remaining_;
      }
      out_.Move(data, static_cast<size_t>(n));
      data.Clear();
      out_remaining_ -= n;
      break;
    }
    case OutFraming::kChunked:
      if (!data.empty()) {
        char buf[20];
        absl::string_view size = FormatHex(data.length(), buf);
        out_.Append(size);
        out_.Append("\r\n");
        out_.Move(data);
        out_.Append("\r\n");
      }
      if (end_stream) out_.Append("0\r\n\r\n");
      break;
    case OutFraming::kUntilClose:
    case OutFraming::kRaw:
      out_.Move(data);
      break;
  }
  WriteOut();
  if (end_stream) FinishLocalMessage();
}

void CodecBase::EncodeTrailersImpl(const HeaderMap& trailers) {
  if (!stream_active_ || !out_headers_sent_ || out_complete_) return;
  if (out_framing_ == OutFraming::kChunked) {
    WriteBlock(out_, EstimateBlock(trailers, kBlockOverhead), [&](auto& sink) {
      sink("0\r\n");
      EmitFields(trailers, SkipInTrailers, sink);
      sink("\r\n");
    });
    WriteOut();
  }
  FinishLocalMessage();
}

void CodecBase::FinishLocalMessage() {
  out_complete_ = true;
  if (out_framing_ == OutFraming::kContentLength && out_remaining_ > 0) {
    // The peer would wait for bytes that never come, or read the next message as body.
    LOG_EVERY_N_SEC(WARN, 1) << "h1: message ended " << out_remaining_
                             << " bytes short of its content-length; closing";
    ResetActiveStream(StreamResetReason::kLocalReset, "body shorter than content-length");
    return;
  }
  OnLocalMessageComplete();
}

void CodecBase::CompleteStream() {
  if (!stream_active_) return;
  if (!in_message_done_ && !tunnel_) swallow_message_complete_ = true;
  stream_active_ = false;
  decoder_ = nullptr;
  callbacks_.clear();
  if (stream_read_disabled_ > 0) {
    stream_read_disabled_ = 0;
    if (!io_closed_) io_.ReadDisable(false);
  }
  if (!keep_alive_ || goaway_ || tunnel_) {
    CloseConnection(/*flush=*/true);
    return;
  }
  if (!processing_ && (!pending_input_.empty() || (remote_eof_ && !eof_handled_))) {
    ScheduleResume();
  }
}

void CodecBase::ResetStreamCallbacks(StreamResetReason reason, absl::string_view details) {
  if (!stream_active_) return;
  stream_active_ = false;
  decoder_ = nullptr;
  if (stream_read_disabled_ > 0) {
    stream_read_disabled_ = 0;
    if (!io_closed_) io_.ReadDisable(false);
  }
  absl::InlinedVector<StreamCallbacks*, 2> callbacks;
  callbacks.swap(callbacks_);
  for (StreamCallbacks* cb : callbacks) cb->OnResetStream(reason, details);
}

void CodecBase::ResetActiveStream(StreamResetReason reason, absl::string_view details) {
  if (!stream_active_) return;
  ResetStreamCallbacks(reason, details);
  CloseConnection(/*flush=*/false);
}

void CodecBase::CloseConnection(bool flush) {
  closed_ = true;
  keep_alive_ = false;
  resume_timer_.Disable();
  pending_input_.Clear();
  if (io_closed_) return;
  io_closed_ = true;
  if (input_hold_) {
    input_hold_ = false;
    io_.ReadDisable(false);
  }
  io_.Close(flush);
}

void CodecBase::CountProtocolError(ParserError error) {
  ++counters_->protocol_errors;
  ++counters_->protocol_errors_by_error[static_cast<size_t>(error)];
}

void CodecBase::StreamReadDisable(bool disable) {
  if (!stream_active_) return;
  if (disable) {
    if (stream_read_disabled_++ == 0 && !io_closed_) io_.ReadDisable(true);
    return;
  }
  if (stream_read_disabled_ == 0) return;
  if (--stream_read_disabled_ > 0) return;
  if (!io_closed_) io_.ReadDisable(false);
  OnReadEnabled();
  if (!pending_input_.empty() || (remote_eof_ && !eof_handled_)) ScheduleResume();
}

void CodecBase::OnHighWatermarkImpl() {
  above_high_watermark_ = true;
  absl::InlinedVector<StreamCallbacks*, 2> callbacks = callbacks_;
  for (StreamCallbacks* cb : callbacks) {
    if (!stream_active_) break;
    cb->OnAboveWriteBufferHighWatermark();
  }
}

void CodecBase::OnLowWatermarkImpl() {
  above_high_watermark_ = false;
  // Input held while the client was not reading its responses (ServerCodec::ReadyForInput).
  if (!stream_active_ && !processing_ && !pending_input_.empty()) ScheduleResume();
  absl::InlinedVector<StreamCallbacks*, 2> callbacks = callbacks_;
  for (StreamCallbacks* cb : callbacks) {
    if (!stream_active_) break;
    cb->OnBelowWriteBufferLowWatermark();
  }
}

}  // namespace codec_internal

// ---------------------------------------------------------------------------------------------
// ServerCodec

ServerCodec::ServerCodec(event::Loop& loop, CodecIo& io, ServerConnectionCallbacks& callbacks,
                         const CodecOptions& options)
    : CodecBase(loop, io, Parser::Type::kRequest, options), callbacks_(callbacks) {}

bool ServerCodec::ReadyForInput() const {
  // One request at a time: once a request is fully parsed, the next (pipelined) one waits for the
  // response to complete, and bytes after an upgrade request wait for the 101 (or a refusal).
  // A client that is not reading its responses gets no new request read until the connection's
  // write buffer falls to its low watermark: held input disables reading, so what it pipelines
  // cannot pile up replies.
  if (!stream_active_) return !above_high_watermark_;
  return tunnel_ || !in_message_done_;
}

Action ServerCodec::OnMessageBegin() {
  head_in_progress_ = true;
  ++messages_this_pass_;
  have_trailers_ = false;
  scratch_.Clear();
  authority_set_ = false;
  head_request_ = false;
  connect_request_ = false;
  upgrade_request_ = false;
  request_keep_alive_ = true;
  expect_continue_ = false;
  continue_sent_ = false;
  return Action::kContinue;
}

Action ServerCodec::OnRequestLine(absl::string_view method, absl::string_view target, int, int) {
  head_request_ = method == "HEAD";
  connect_request_ = method == "CONNECT";
  scratch_.Add(":method", method);
  if (connect_request_) {
    // authority-form: the tunnel's destination; CONNECT has no :scheme or :path (RFC 9113 8.5).
    scratch_.Add(":authority", target);
    authority_set_ = true;
  } else if (target[0] == '/' || target == "*") {
    scratch_.Add(":scheme", options_.scheme);
    scratch_.Add(":path", target);
  } else {
    // absolute-form (RFC 9112 3.2.2), which the parser accepts only as "http://" or "https://"
    // (any case), a valid non-empty authority without userinfo, then path-abempty [ "?" query ].
    // Its authority replaces Host.
    const bool https = target[4] != ':';
    scratch_.Add(":scheme", https ? "https" : "http");
    absl::string_view rest = target.substr(https ? 8 : 7);
    const size_t end = rest.find_first_of("/?");
    scratch_.Add(":authority", rest.substr(0, end));
    authority_set_ = true;
    absl::string_view path =
        end == absl::string_view::npos ? absl::string_view() : rest.substr(end);
    if (path.empty() || path[0] != '/') {
      path_scratch_.assign("/");
      path_scratch_.append(path.data(), path.size());
      path = path_scratch_;
    }
    scratch_.Add(":path", path);
  }
  return Action::kContinue;
}

Action ServerCodec::OnHeader(absl::string_view name, absl::string_view value) {
  if (name.size() == 4 && ascii_case::EqualsLowercase(name, "host")) {
    // Host becomes :authority, as HTTP/2 carries it.
    if (!authority_set_) {
      scratch_.Add(":authority", value);
      authority_set_ = true;
    }
    return Action::kContinue;
  }
  if (options_.auto_continue && name.size() == 6 && ascii_case::EqualsLowercase(name, "expect") &&
      ascii_case::EqualsLowercase(value, "100-continue")) {
    return Action::kContinue;  // the codec answers it
  }
  return CodecBase::OnHeader(name, value);
}

absl::Status ServerCodec::OnHeadersEvent() {
  const MessageInfo& info = parser_.message_info();
  protocol_ = info.version_minor == 0 ? Protocol::kHttp10 : Protocol::kHttp11;
  if (connect_request_ && !options_.allow_connect) {
    ++counters_->connect_refused;
    scratch_.Clear();
    WriteLocalReply(403, "CONNECT is not allowed\n");
    error_ = absl::PermissionDeniedError("CONNECT is not allowed");
    CloseConnection(/*flush=*/true);
    return error_;
  }
  BeginStream(nullptr);
  request_keep_alive_ = info.keep_alive;
  upgrade_request_ = info.upgrade;
  bool end_stream = !upgrade_request_ &&
                    (info.framing == BodyFraming::kNone ||
                     (info.framing == BodyFraming::kContentLength && info.content_length == 0));
  // RFC 9110 10.1.1: 100-continue from an HTTP/1.0 client is ignored.
  expect_continue_ = info.expect_continue && info.version_minor == 1 && !end_stream;
  // Marked before DecodeHeaders so a response completed inside it finds the request complete.
  in_end_delivered_ = end_stream;
  ++counters_->requests;
  HeaderMapPtr headers = TakeHeaders();
  StreamDecoder& decoder = callbacks_.NewStream(stream_);
  if (!stream_active_) return error_;
  decoder_ = &decoder;
  decoder.DecodeHeaders(std::move(headers), end_stream);
  MaybeSendAutoContinue();
  return absl::OkStatus();
}

void ServerCodec::MaybeSendAutoContinue() {
  if (!options_.auto_continue || !expect_continue_ || continue_sent_ || !stream_active_ ||
      out_headers_sent_ || in_end_delivered_ || stream_read_disabled_ > 0) {
    return;
  }
  continue_sent_ = true;
  ++counters_->informational;
  out_.Append("HTTP/1.1 100 Continue\r\n\r\n");
  WriteOut();
}

void ServerCodec::OnMessageCompleteEvent() {
  in_message_done_ = true;
  // An upgrade request's stream stays open for the tunnel; ReadyForInput() holds what follows
  // until the response decides.
  if (upgrade_request_) return;
  DeliverMessageEnd();
}

void ServerCodec::OnInputEnded() {
  if (out_complete_ && !tunnel_) CompleteStream();
}

void ServerCodec::Encode1xx(const HeaderMap& headers) {
  // RFC 9110 15.2: no 1xx to an HTTP/1.0 client; none after the final response started.
  if (!stream_active_ || out_headers_sent_ || protocol_ == Protocol::kHttp10) return;
  int status = StatusOf(headers);
  if (status < 100 || status > 199 || status == 101) return;
  if (status == 100) {
    if (continue_sent_) return;
    continue_sent_ = true;
  }
  ++counters_->informational;
  WriteBlock(out_, EstimateBlock(headers, kBlockOverhead), [&](auto& sink) {
    EmitStatusLine(status, sink);
    EmitFields(headers, SkipInResponse, sink);
    sink("\r\n");
  });
  WriteOut();
}

void ServerCodec::EncodeHeadersImpl(const HeaderMap& headers, bool end_stream) {
  if (!stream_active_ || out_headers_sent_) return;
  int status = StatusOf(headers);
  if (status == 0 || status > 599) {
    LOG_EVERY_N_SEC(ERROR, 1) << "h1: response without a valid :status; resetting";
    ResetActiveStream(StreamResetReason::kLocalReset, "invalid :status");
    return;
  }
  if (status < 200 && status != 101) {
    Encode1xx(headers);
    return;
  }
  bool open_tunnel = false;
  if (upgrade_request_) {
    open_tunnel = connect_request_ ? status < 300 : status == 101;
  }
  if (status == 101 && !open_tunnel) {
    LOG_EVERY_N_SEC(ERROR, 1) << "h1: 101 without an upgrade request; resetting";
    ResetActiveStream(StreamResetReason::kLocalReset, "101 without an upgrade request");
    return;
  }
  out_headers_sent_ = true;
  ++counters_->responses;

  bool no_body = head_request_ || status == 204 || status == 304 || open_tunnel;
  uint64_t content_length = 0;
  bool has_content_length = ContentLengthOf(headers, &content_length);
  // The connection ends after this response when anyone asked for it, or when the rest of the
  // request cannot be found reliably (a refused upgrade, an unanswered 100-continue, a response
  // that finishes before its request).
  bool close = goaway_ || !keep_alive_ || !request_keep_alive_ || remote_eof_ ||
               HasConnectionToken(headers, "close") || (upgrade_request_ && !open_tunnel) ||
               (expect_continue_ && !continue_sent_ && !in_end_delivered_) ||
               (end_stream && !in_end_delivered_);
  bool emit_length = false;
  uint64_t length_value = 0;
  if (open_tunnel) {
    out_framing_ = OutFraming::kRaw;
  } else if (no_body) {
    out_framing_ = OutFraming::kNone;
    // HEAD and 304 may state the length the body would have; 204 never carries one.
    if (has_content_length && status != 204) {
      emit_length = true;
      length_value = content_length;
    }
  } else if (end_stream) {
    out_framing_ = OutFraming::kNone;
    emit_length = true;  // without it the response would be delimited by close
  } else if (has_content_length) {
    out_framing_ = OutFraming::kContentLength;
    out_remaining_ = content_length;
    emit_length = true;
    length_value = content_length;
  } else if (protocol_ == Protocol::kHttp11) {
    out_framing_ = OutFraming::kChunked;
  } else {
    out_framing_ = OutFraming::kUntilClose;  // HTTP/1.0 has no chunked coding
    close = true;
  }
  if (close) keep_alive_ = false;
  std::optional<absl::string_view> upgrade;
  if (status == 101) upgrade = headers.Get("upgrade");

  const size_t estimate =
      EstimateBlock(headers, kBlockOverhead + (upgrade.has_value() ? upgrade->size() : 0));
  WriteBlock(out_, estimate, [&](auto& sink) {
    EmitStatusLine(status, sink);
    EmitFields(headers, SkipInResponse, sink);
    if (emit_length) {
      char buf[20];
      sink("content-length: ");
      sink(FormatDecimal(length_value, buf));
      sink("\r\n");
    }
    if (out_framing_ == OutFraming::kChunked) sink("transfer-encoding: chunked\r\n");
    if (status == 101) {
      sink("connection: upgrade\r\n");
      if (upgrade.has_value() && SafeField("upgrade", *upgrade)) {
        sink("upgrade: ");
        sink(*upgrade);
        sink("\r\n");
      }
    } else if (!keep_alive_ && !open_tunnel) {
      sink("connection: close\r\n");
    } else if (protocol_ == Protocol::kHttp10 && !open_tunnel) {
      sink("connection: keep-alive\r\n");
    }
    sink("\r\n");
  });
  WriteOut();
  if (open_tunnel) {
    tunnel_ = true;
    keep_alive_ = false;
    ++counters_->upgrades;
    if (!processing_ && !pending_input_.empty()) ScheduleResume();
  }
  if (end_stream) FinishLocalMessage();
}

void ServerCodec::OnLocalMessageComplete() {
  if (tunnel_) {
    // No half-close in CodecIo: ending our direction of a tunnel ends the connection.
    CompleteStream();
    return;
  }
  if (upgrade_request_ || !in_end_delivered_) {
    // The request's end will not be read (refused upgrade, early response): it cannot be
    // reused, so the stream completes here and the connection closes.
    keep_alive_ = false;
    in_end_delivered_ = true;
  }
  if (out_framing_ == OutFraming::kUntilClose) keep_alive_ = false;
  if (in_end_delivered_) CompleteStream();
}

void ServerCodec::WriteLocalReply(int status, absl::string_view body) {
  ++counters_->responses;
  out_headers_sent_ = true;
  WriteBlock(out_, body.size() + kBlockOverhead, [&](auto& sink) {
    char buf[20];
    EmitStatusLine(status, sink);
    sink("connection: close\r\ncontent-type: text/plain\r\ncontent-length: ");
    sink(FormatDecimal(body.size(), buf));
    sink("\r\n\r\n");
    sink(body);
  });
  WriteOut();
}

absl::Status ServerCodec::OnParseError(ParserError error) {
  CountProtocolError(error);
  if (!stream_active_ || !out_headers_sent_) {
    WriteLocalReply(HttpStatusForError(error), absl::StrCat(ParserErrorMessage(error), "\n"));
  }
  error_ = parser_.ToStatus();
  ResetStreamCallbacks(StreamResetReason::kProtocolError, ParserErrorName(error));
  CloseConnection(/*flush=*/true);
  return error_;
}

absl::Status ServerCodec::OnEofEvent() {
  if (stream_active_ && tunnel_) {
    // The peer's direction of the tunnel ended.
    in_end_delivered_ = true;
    body_buffer_.Clear();
    decoder_->DecodeData(body_buffer_, true);
    return absl::OkStatus();
  }
  if (stream_active_ && !in_end_delivered_ && !upgrade_request_) {
    ResetStreamCallbacks(StreamResetReason::kConnectionTermination, "peer closed mid-request");
    CloseConnection(/*flush=*/false);
    return absl::InvalidArgumentError(
        absl::StrCat(ParserErrorName(ParserError::kIncompleteMessage), ": ",
                     ParserErrorMessage(ParserError::kIncompleteMessage)));
  }
  if (stream_active_) {
    // The request is in; a half-closed client still gets its response, then the connection ends.
    keep_alive_ = false;
    return absl::OkStatus();
  }
  CloseConnection(/*flush=*/true);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// ClientCodec

ClientCodec::ClientCodec(event::Loop& loop, CodecIo& io, ConnectionCallbacks& callbacks,
                         const CodecOptions& options)
    : CodecBase(loop, io, Parser::Type::kResponse, options), callbacks_(callbacks) {}

bool ClientCodec::CanOpenStream() const {
  return !closed_ && !stream_active_ && keep_alive_ && !goaway_ && !remote_eof_;
}

StreamEncoder& ClientCodec::NewStream(StreamDecoder& response_decoder) {
  CHECK(CanOpenStream()) << "h1 client: NewStream while the connection cannot take a request";
  BeginStream(&response_decoder);
  upgrade_request_ = false;
  connect_request_ = false;
  response_started_ = false;
  return stream_;
}

absl::string_view ClientCodec::TerminationDetail() const {
  if (out_bytes_written_ == 0) return kResetDetailRequestNotSent;
  if (!response_started_) return kResetDetailNoResponse;
  return kResetDetailResponseIncomplete;
}

void ClientCodec::NotifyGoAway() {
  if (goaway_notified_) return;
  goaway_notified_ = true;
  callbacks_.OnGoAway();
}

void ClientCodec::Encode1xx(const HeaderMap&) {
  LOG_EVERY_N_SEC(WARN, 1) << "h1 client: Encode1xxHeaders is for responses; ignored";
}

void ClientCodec::EncodeHeadersImpl(const HeaderMap& headers, bool end_stream) {
  if (!stream_active_ || out_headers_sent_) return;
  std::optional<absl::string_view> method = headers.Get(":method");
  std::optional<absl::string_view> path = headers.Get(":path");
  std::optional<absl::string_view> authority = headers.Get(":authority");
  if (!method.has_value() || method->empty() || !SafeField(*method, "")) {
    ResetActiveStream(StreamResetReason::kLocalReset, "request without a valid :method");
    return;
  }
  connect_request_ = *method == "CONNECT";
  absl::string_view target =
      connect_request_ ? authority.value_or(absl::string_view()) : path.value_or("");
  if (target.empty() || !SafeField("t", target) || target.find(' ') != absl::string_view::npos) {
    ResetActiveStream(StreamResetReason::kLocalReset, "request without a valid target");
    return;
  }
  upgrade_request_ = connect_request_ || headers.Has("upgrade");
  parser_.SetRequestMethod(*method);
  out_headers_sent_ = true;
  ++counters_->requests;

  uint64_t content_length = 0;
  bool has_content_length = ContentLengthOf(headers, &content_length);
  bool emit_length = false;
  uint64_t length_value = 0;
  if (upgrade_request_) {
    out_framing_ = OutFraming::kRaw;  // what follows the head is tunnel bytes
  } else if (end_stream) {
    out_framing_ = OutFraming::kNone;
    // RFC 9110 8.6: state the (empty) length when the method gives content a meaning.
    emit_length = has_content_length || MethodExpectsBody(*method);
  } else if (has_content_length) {
    out_framing_ = OutFraming::kContentLength;
    out_remaining_ = content_length;
    emit_length = true;
    length_value = content_length;
  } else {
    out_framing_ = OutFraming::kChunked;
  }
  if (goaway_) keep_alive_ = false;
  bool websocket_style = upgrade_request_ && !connect_request_;
  std::optional<absl::string_view> upgrade;
  if (websocket_style) upgrade = headers.Get("upgrade");
  std::optional<absl::string_view> host = authority.has_value() ? authority : headers.Get("host");
  if (host.has_value() && !SafeField("host", *host)) host.reset();

  const size_t estimate = EstimateBlock(headers, kBlockOverhead + method->size() + target.size() +
                                                     (host.has_value() ? host->size() : 0) +
                                                     (upgrade.has_value() ? upgrade->size() : 0));
  WriteBlock(out_, estimate, [&](auto& sink) {
    sink(*method);
    sink(" ");
    sink(target);
    sink(" HTTP/1.1\r\n");
    // HTTP/1.1 requires exactly one Host, empty if there is no authority (RFC 9112 3.2).
    sink("host: ");
    if (host.has_value()) sink(*host);
    sink("\r\n");
    EmitFields(
        headers, [](absl::string_view name) { return IsManagedField(name) || name == "host"; },
        sink);
    if (emit_length) {
      char buf[20];
      sink("content-length: ");
      sink(FormatDecimal(length_value, buf));
      sink("\r\n");
    }
    if (out_framing_ == OutFraming::kChunked) sink("transfer-encoding: chunked\r\n");
    if (websocket_style) {
      sink("connection: upgrade\r\n");
      if (upgrade.has_value() && SafeField("upgrade", *upgrade)) {
        sink("upgrade: ");
        sink(*upgrade);
        sink("\r\n");
      }
    } else if (!keep_alive_) {
      sink("connection: close\r\n");
    }
    sink("\r\n");
  });
  WriteOut();
  if (end_stream) FinishLocalMessage();
}

Action ClientCodec::OnMessageBegin() {
  if (!stream_active_) return Action::kAbort;  // a response nobody asked for
  response_started_ = true;
  head_in_progress_ = true;
  have_trailers_ = false;
  scratch_.Clear();
  return Action::kContinue;
}

Action ClientCodec::OnStatusLine(int, int, int status_code, absl::string_view) {
  char digits[3] = {static_cast<char>('0' + status_code / 100),
                    static_cast<char>('0' + status_code / 10 % 10),
                    static_cast<char>('0' + status_code % 10)};
  scratch_.Add(":status", absl::string_view(digits, 3));
  return Action::kContinue;
}

absl::Status ClientCodec::OnHeadersEvent() {
  const MessageInfo& info = parser_.message_info();
  int status = info.status_code;
  HeaderMapPtr headers = TakeHeaders();
  if (status < 200) {
    if (status != 101) {
      ++counters_->informational;
      decoder_->Decode1xxHeaders(std::move(headers));
      return absl::OkStatus();
    }
    if (!upgrade_request_ || connect_request_) {
      ++counters_->protocol_errors;
      error_ = absl::InvalidArgumentError("101 Switching Protocols without an upgrade request");
      ResetStreamCallbacks(StreamResetReason::kProtocolError, "unexpected 101");
      CloseConnection(/*flush=*/false);
      return error_;
    }
  }
  ++counters_->responses;
  bool open_tunnel = upgrade_request_ && (connect_request_ ? status < 300 : status == 101);
  if (open_tunnel) {
    tunnel_ = true;
    keep_alive_ = false;
    ++counters_->upgrades;
    decoder_->DecodeHeaders(std::move(headers), false);
    return absl::OkStatus();
  }
  if (!info.keep_alive || upgrade_request_) {
    // A refused upgrade may have been followed by tunnel bytes: do not reuse either way.
    keep_alive_ = false;
    NotifyGoAway();
    if (!stream_active_) return absl::OkStatus();
  }
  bool end_stream = info.framing == BodyFraming::kNone ||
                    (info.framing == BodyFraming::kContentLength && info.content_length == 0);
  if (end_stream) {
    DeliverLast([&](StreamDecoder& decoder) { decoder.DecodeHeaders(std::move(headers), true); });
  } else {
    decoder_->DecodeHeaders(std::move(headers), false);
  }
  return absl::OkStatus();
}

void ClientCodec::OnMessageCompleteEvent() {
  const MessageInfo& info = parser_.message_info();
  if (!tunnel_ && info.status_code < 200) return;  // an interim response; the final one follows
  in_message_done_ = true;
  if (tunnel_) return;
  DeliverMessageEnd();
}

void ClientCodec::OnInputEnded() {
  if (!out_complete_) {
    // The response finished before the request: the rest of the request is never sent, so the
    // connection cannot carry another one.
    keep_alive_ = false;
    NotifyGoAway();
    if (!stream_active_) return;
  }
  CompleteStream();
}

void ClientCodec::OnLocalMessageComplete() {
  if (tunnel_) {
    CompleteStream();
    return;
  }
  if (in_end_delivered_) CompleteStream();
}

absl::Status ClientCodec::OnParseError(ParserError error) {
  CountProtocolError(error);
  error_ = error == ParserError::kCallbackAborted
               ? absl::InvalidArgumentError("response bytes without a request")
               : parser_.ToStatus();
  ResetStreamCallbacks(StreamResetReason::kProtocolError, ParserErrorName(error));
  CloseConnection(/*flush=*/false);
  return error_;
}

absl::Status ClientCodec::OnEofEvent() {
  if (stream_active_ && tunnel_) {
    in_end_delivered_ = true;
    body_buffer_.Clear();
    decoder_->DecodeData(body_buffer_, true);
    if (stream_active_ && out_complete_) CompleteStream();
    return absl::OkStatus();
  }
  if (!stream_active_) {
    // The upstream closed an idle connection.
    keep_alive_ = false;
    NotifyGoAway();
    CloseConnection(/*flush=*/true);
    return absl::OkStatus();
  }
  // A close-delimited body ends here; anything else was cut short.
  event_ = Event::kNone;
  ParserError error = parser_.Finish();
  if (error == ParserError::kOk && event_ == Event::kMessageComplete) {
    keep_alive_ = false;
    OnMessageCompleteEvent();
    if (stream_active_) {
      // The request was still being sent; its stream ends with the response.
      CompleteStream();
    }
    CloseConnection(/*flush=*/true);
    return absl::OkStatus();
  }
  keep_alive_ = false;
  NotifyGoAway();
  ResetStreamCallbacks(StreamResetReason::kConnectionTermination, TerminationDetail());
  CloseConnection(/*flush=*/false);
  return absl::UnavailableError("upstream closed the connection before the response completed");
}

}  // namespace meshlet::http::h1
