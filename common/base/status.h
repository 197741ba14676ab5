#pragma once

// Status helpers missing from Abseil 20220623: early-return macros for absl::Status and
// absl::StatusOr<T>, and a way to prefix an error with where it happened.
//
//   RETURN_IF_ERROR(conn.Write(bytes));
//   ASSIGN_OR_RETURN(Address addr, Address::Parse(text));
//   return Annotate(status, "listeners[2].address");  // "listeners[2].address: <message>"

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace meshlet {

namespace status_internal {
inline const absl::Status& AsStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& AsStatus(const absl::StatusOr<T>& s) {
  return s.status();
}
}  // namespace status_internal

// Returns a copy of `status` whose message is "<context>: <message>"; OK stays OK.
inline absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

}  // namespace meshlet

#define MESHLET_STATUS_CONCAT_INNER(a, b) a##b
#define MESHLET_STATUS_CONCAT(a, b) MESHLET_STATUS_CONCAT_INNER(a, b)

// Evaluates `expr` (an absl::Status or absl::StatusOr) once; returns its status if not OK.
#define RETURN_IF_ERROR(expr)                                            \
  do {                                                                   \
    const auto& meshlet_status_value = (expr);                           \
    if (!meshlet_status_value.ok()) {                                    \
      return ::meshlet::status_internal::AsStatus(meshlet_status_value); \
    }                                                                    \
  } while (0)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, otherwise moves the
// value into `lhs`, which may be a declaration (`ASSIGN_OR_RETURN(auto x, F())`).
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  MESHLET_ASSIGN_OR_RETURN_IMPL(MESHLET_STATUS_CONCAT(meshlet_statusor_, __LINE__), lhs, rexpr)

#define MESHLET_ASSIGN_OR_RETURN_IMPL(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()
