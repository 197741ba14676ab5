#include "sidecar/stream/decision_record.h"

#include <netinet/in.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "sidecar/tracing/trace_context.h"

namespace meshlet::sidecar::stream {

void EndpointBytes::Set(const net::Address& address) {
  if (address.family() == net::Address::Family::kIPv4) {
    const sockaddr_in& in = *address.in4();
    family = 4;
    port = ntohs(in.sin_port);
    std::memcpy(ip, &in.sin_addr, 4);
  } else if (address.family() == net::Address::Family::kIPv6) {
    const sockaddr_in6& in6 = *address.in6();
    family = 6;
    port = ntohs(in6.sin6_port);
    std::memcpy(ip, &in6.sin6_addr, 16);
  } else {
    family = 0;
    port = 0;
  }
}

std::string EndpointBytes::ToString() const {
  sockaddr_storage storage{};
  socklen_t len = 0;
  if (family == 4) {
    auto& in = reinterpret_cast<sockaddr_in&>(storage);
    in.sin_family = AF_INET;
    in.sin_port = htons(port);
    std::memcpy(&in.sin_addr, ip, 4);
    len = sizeof(in);
  } else if (family == 6) {
    auto& in6 = reinterpret_cast<sockaddr_in6&>(storage);
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port);
    std::memcpy(&in6.sin6_addr, ip, 16);
    len = sizeof(in6);
  } else {
    return "-";
  }
  absl::StatusOr<net::Address> address =
      net::Address::FromSockaddr(reinterpret_cast<const sockaddr*>(&storage), len);
  return address.ok() ? address->ToString() : "-";
}

absl::string_view AttemptOutcomeName(AttemptOutcome outcome) {
  switch (outcome) {
    case AttemptOutcome::kPending:
      return "pending";
    case AttemptOutcome::kResponse:
      return "response";
    case AttemptOutcome::kConnectFailure:
      return "connect-failure";
    case AttemptOutcome::kRefusedStream:
      return "refused-stream";
    case AttemptOutcome::kReset:
      return "reset";
    case AttemptOutcome::kTimeout:
      return "timeout";
    case AttemptOutcome::kRouteTimeout:
      return "route-timeout";
    case AttemptOutcome::kOverflow:
      return "overflow";
    case AttemptOutcome::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

absl::string_view ConnectFailureName(ConnectFailure why) {
  switch (why) {
    case ConnectFailure::kOther:
      return "";
    case ConnectFailure::kRefused:
      return "refused";
    case ConnectFailure::kTimeout:
      return "timeout";
    case ConnectFailure::kClosed:
      return "closed";
  }
  return "";
}

absl::string_view RetryCauseName(RetryCause cause) {
  switch (cause) {
    case RetryCause::kConnectFailure:
      return "connect-failure";
    case RetryCause::kRefusedStream:
      return "refused-stream";
    case RetryCause::kReset:
      return "reset";
    case RetryCause::kTimeout:
      return "timeout";
    case RetryCause::k5xx:
      return "5xx";
    case RetryCause::kStatus:
      return "status";
    case RetryCause::kGrpc:
      return "grpc";
    case RetryCause::kGatewayError:
      return "gateway-error";
  }
  return "unknown";
}

absl::string_view NoRetryCauseName(NoRetryCause cause) {
  switch (cause) {
    case NoRetryCause::kNotRetriable:
      return "not-retriable";
    case NoRetryCause::kAttemptsExhausted:
      return "attempts-exhausted";
    case NoRetryCause::kBudget:
      return "budget";
    case NoRetryCause::kBreaker:
      return "breaker";
    case NoRetryCause::kDeadline:
      return "deadline";
    case NoRetryCause::kNonIdempotent:
      return "non-idempotent";
    case NoRetryCause::kBodyTooLarge:
      return "body-too-large";
    case NoRetryCause::kLocalAppRefused:
      return "local-app-refused";
    case NoRetryCause::kResponseStarted:
      return "response-started";
    case NoRetryCause::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

absl::string_view AuthzResultName(AuthzResult result) {
  switch (result) {
    case AuthzResult::kUnknown:
      return "";
    case AuthzResult::kAllow:
      return "allow";
    case AuthzResult::kDeny:
      return "deny";
    case AuthzResult::kNone:
      return "none";
  }
  return "";
}

absl::string_view ShedReasonName(ShedReason reason) {
  switch (reason) {
    case ShedReason::kNone:
      return "";
    case ShedReason::kActiveRequests:
      return "active_requests";
    case ShedReason::kMemory:
      return "memory";
  }
  return "";
}

int64_t AttemptDurationMs(const AttemptRecord& attempt) {
  const MonotonicTime::duration elapsed(attempt.end_ticks - attempt.start_ticks);
  const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
  return ms > 0 ? ms : 0;
}

void AppendAttempts(const DecisionRecord& record, std::string* out) {
  const uint32_t kept = record.kept_attempts();
  for (uint32_t i = 0; i < kept; ++i) {
    const AttemptRecord& a = record.attempts[i];
    if (i > 0) out->append("; ");
    absl::StrAppend(out, "endpoint=", a.endpoint.ToString(), " outcome=");
    if (a.outcome == AttemptOutcome::kResponse) {
      absl::StrAppend(out, a.status);
    } else {
      absl::StrAppend(out, AttemptOutcomeName(a.outcome));
      if (a.outcome == AttemptOutcome::kConnectFailure &&
          a.connect_failure != ConnectFailure::kOther) {
        absl::StrAppend(out, " connect=", ConnectFailureName(a.connect_failure));
      }
    }
    absl::StrAppend(out, " duration_ms=", AttemptDurationMs(a), " next=");
    switch (a.next) {
      case AttemptNext::kPending:
        out->append("pending");
        break;
      case AttemptNext::kDone:
        out->append("done");
        break;
      case AttemptNext::kRetry:
        absl::StrAppend(out, "retry(", RetryCauseName(static_cast<RetryCause>(a.cause)), ")");
        break;
      case AttemptNext::kNoRetry:
        absl::StrAppend(out, "no-retry(", NoRetryCauseName(static_cast<NoRetryCause>(a.cause)),
                        ")");
        break;
    }
    if (a.span_id != 0) {
      // The parent the upstream was told: the next hop's span names it (meshctl explain links
      // the hops of an unsampled request by it, as the attempts' client spans are not exported).
      char hex[16];
      tracing::FormatHex64(a.span_id, hex);
      out->append(" span_id=");
      out->append(hex, sizeof(hex));
    }
  }
  if (record.dropped_attempts() > 0) {
    absl::StrAppend(out, kept > 0 ? "; " : "", "dropped=", record.dropped_attempts());
  }
}

}  // namespace meshlet::sidecar::stream
