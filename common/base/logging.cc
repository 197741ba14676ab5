#include "common/base/logging.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"

namespace meshlet {
namespace logging_internal {
std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};
}  // namespace logging_internal

namespace {
// Only tests install sinks, so a mutex here is fine; the default path (no sink) takes no lock.
std::mutex g_sink_mu;
ScopedLogSink::Sink* g_sink = nullptr;
std::atomic<bool> g_has_sink{false};
// True on a thread while it runs the sink (which holds g_sink_mu).
thread_local bool t_in_sink = false;

const char* BaseName(const char* path) {
  const char* base = path;
  for (const char* p = path; *p != '\0'; ++p) {
    if (*p == '/') base = p + 1;
  }
  return base;
}

int64_t MonotonicNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

std::optional<LogLevel> ParseLogLevel(absl::string_view name) {
  std::string lower = absl::AsciiStrToLower(name);
  if (lower == "trace") return LogLevel::kTrace;
  if (lower == "debug") return LogLevel::kDebug;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "warn" || lower == "warning") return LogLevel::kWarn;
  if (lower == "error") return LogLevel::kError;
  if (lower == "critical") return LogLevel::kCritical;
  if (lower == "off") return LogLevel::kOff;
  return std::nullopt;
}

absl::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return "trace";
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
    case LogLevel::kCritical:
      return "critical";
    case LogLevel::kOff:
      return "off";
  }
  return "unknown";
}

void SetLogLevel(LogLevel level) {
  logging_internal::g_min_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

LogLevel GetLogLevel() {
  return static_cast<LogLevel>(logging_internal::g_min_level.load(std::memory_order_relaxed));
}

namespace logging_internal {

LogMessage::LogMessage(LogLevel level, const char* file, int line, bool fatal)
    : level_(level), fatal_(fatal), stream_(std::make_unique<std::ostringstream>()) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  *stream_ << absl::StrFormat("[%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ %s %ld %s:%d] ",
                              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                              tm.tm_sec, ts.tv_nsec / 1000, LogLevelName(level),
                              static_cast<long>(syscall(SYS_gettid)), BaseName(file), line);
}

LogMessage::~LogMessage() {
  std::string line = std::move(*stream_).str();
  // A line logged from inside the sink (a CHECK in it, say) goes to stderr: the sink's lock is
  // held by this very thread.
  if (g_has_sink.load(std::memory_order_acquire) && !t_in_sink) {
    std::lock_guard<std::mutex> lock(g_sink_mu);
    if (g_sink != nullptr) {
      t_in_sink = true;
      (*g_sink)(level_, line);
      t_in_sink = false;
      if (fatal_) std::abort();
      return;
    }
  }
  line.push_back('\n');
  // One write per line keeps concurrent lines whole; a short write is not worth retrying.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
  if (fatal_) std::abort();
}

FatalMessage::FatalMessage(const char* file, int line)
    : message_(std::make_unique<LogMessage>(LogLevel::kCritical, file, line, /*fatal=*/true)) {}

FatalMessage::~FatalMessage() {
  message_.reset();  // emits the line and aborts
  std::abort();
}

bool ShouldLogEvery(std::atomic<int64_t>& last_ns, int64_t interval_ns) {
  int64_t now = MonotonicNanos();
  int64_t last = last_ns.load(std::memory_order_relaxed);
  if (last != 0 && now - last < interval_ns) return false;
  return last_ns.compare_exchange_strong(last, now, std::memory_order_relaxed);
}

}  // namespace logging_internal

ScopedLogSink::ScopedLogSink(Sink sink) {
  {
    std::lock_guard<std::mutex> lock(g_sink_mu);
    if (g_sink == nullptr) {
      g_sink = new Sink(std::move(sink));
      g_has_sink.store(true, std::memory_order_release);
      return;
    }
  }
  // Outside the lock: the failure is logged through the sink already installed.
  CHECK(false) << "only one ScopedLogSink at a time";
}

ScopedLogSink::~ScopedLogSink() {
  std::lock_guard<std::mutex> lock(g_sink_mu);
  delete g_sink;
  g_sink = nullptr;
  g_has_sink.store(false, std::memory_order_release);
}

}  // namespace meshlet
