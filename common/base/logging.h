#pragma once

// Leveled logging to stderr, one line per message, written with a single write(2) so lines from
// different threads never interleave. Disabled levels cost one relaxed atomic load: the message
// expression is not evaluated.
//
//   LOG(INFO) << "listening on " << address;
//   LOG_EVERY_N_SEC(WARN, 1) << "dropping span: buffer full";   // hot paths: at most 1/s per site
//   CHECK(ptr != nullptr) << "impossible";                        // crashes loudly
//
// Tests can capture output with ScopedLogSink.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet {

enum class LogLevel : int { kTrace = 0, kDebug, kInfo, kWarn, kError, kCritical, kOff };

// "trace", "debug", "info", "warn"/"warning", "error", "critical", "off" (case-insensitive).
std::optional<LogLevel> ParseLogLevel(absl::string_view name);
absl::string_view LogLevelName(LogLevel level);

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();

namespace logging_internal {
extern std::atomic<int> g_min_level;

inline bool Enabled(LogLevel level) {
  return static_cast<int>(level) >= g_min_level.load(std::memory_order_relaxed);
}

// Accumulates one line; emits it (and aborts for fatal ones) when destroyed. The stream lives on
// the heap: a LOG or CHECK in a hot function then costs it a pointer's worth of frame, where an
// inline stream (with its buffers) made the compiler reserve ~400 bytes and add a stack canary
// on every call, logged or not.
class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line, bool fatal = false);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;

  std::ostream& stream() { return *stream_; }

 private:
  LogLevel level_;
  bool fatal_;
  std::unique_ptr<std::ostringstream> stream_;
};

// A failed CHECK: a critical LogMessage that aborts when destroyed. Its destructor is declared
// noreturn, so a function with a CHECK keeps no registers alive across the failure path.
class FatalMessage {
 public:
  FatalMessage(const char* file, int line);
  [[noreturn]] ~FatalMessage();
  FatalMessage(const FatalMessage&) = delete;
  FatalMessage& operator=(const FatalMessage&) = delete;

  std::ostream& stream() { return message_->stream(); }

 private:
  std::unique_ptr<LogMessage> message_;
};

// Lets `cond ? (void)0 : Voidify() & stream` compile: & binds looser than <<.
struct Voidify {
  void operator&(std::ostream&) {}
};

inline const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

// True at most once per `interval_ns` for one call site; lock-free.
bool ShouldLogEvery(std::atomic<int64_t>& last_ns, int64_t interval_ns);
}  // namespace logging_internal

// Receives every emitted line (without the trailing newline) instead of stderr while alive.
class ScopedLogSink {
 public:
  using Sink = std::function<void(LogLevel, absl::string_view line)>;
  explicit ScopedLogSink(Sink sink);
  ~ScopedLogSink();
  ScopedLogSink(const ScopedLogSink&) = delete;
  ScopedLogSink& operator=(const ScopedLogSink&) = delete;
};

}  // namespace meshlet

#define MESHLET_LOG_LEVEL_TRACE ::meshlet::LogLevel::kTrace
#define MESHLET_LOG_LEVEL_DEBUG ::meshlet::LogLevel::kDebug
#define MESHLET_LOG_LEVEL_INFO ::meshlet::LogLevel::kInfo
#define MESHLET_LOG_LEVEL_WARN ::meshlet::LogLevel::kWarn
#define MESHLET_LOG_LEVEL_ERROR ::meshlet::LogLevel::kError
#define MESHLET_LOG_LEVEL_CRITICAL ::meshlet::LogLevel::kCritical

#define LOG(severity)                                                                       \
  !::meshlet::logging_internal::Enabled(MESHLET_LOG_LEVEL_##severity)                       \
      ? (void)0                                                                             \
      : ::meshlet::logging_internal::Voidify() &                                            \
            ::meshlet::logging_internal::LogMessage(MESHLET_LOG_LEVEL_##severity, __FILE__, \
                                                    __LINE__)                               \
                .stream()

// Each expansion has its own lambda type, hence its own static timestamp: the limit is per site.
#define LOG_EVERY_N_SEC(severity, seconds)                                                  \
  !(::meshlet::logging_internal::Enabled(MESHLET_LOG_LEVEL_##severity) &&                   \
    ::meshlet::logging_internal::ShouldLogEvery(                                            \
        []() -> std::atomic<int64_t>& {                                                     \
          static std::atomic<int64_t> last_ns{0};                                           \
          return last_ns;                                                                   \
        }(),                                                                                \
        static_cast<int64_t>((seconds)*1e9)))                                               \
      ? (void)0                                                                             \
      : ::meshlet::logging_internal::Voidify() &                                            \
            ::meshlet::logging_internal::LogMessage(MESHLET_LOG_LEVEL_##severity, __FILE__, \
                                                    __LINE__)                               \
                .stream()

#define CHECK(cond)                                                                   \
  (cond) ? (void)0                                                                    \
         : ::meshlet::logging_internal::Voidify() &                                   \
               ::meshlet::logging_internal::FatalMessage(__FILE__, __LINE__).stream() \
                   << "CHECK failed: " #cond " "

// Works with absl::Status and absl::StatusOr<T>.
#define CHECK_OK(expr)                                                  \
  do {                                                                  \
    const auto& meshlet_check_status = (expr);                          \
    CHECK(meshlet_check_status.ok())                                    \
        << ::meshlet::logging_internal::StatusOf(meshlet_check_status); \
  } while (0)

#ifdef NDEBUG
#define DCHECK(cond) \
  while (false) CHECK(cond)
#else
#define DCHECK(cond) CHECK(cond)
#endif
