#pragma once

// What a parsed message holds that this binary's schema does not know: fields a later release
// added (protobuf keeps them as unknown fields) and enum values it added (proto3 keeps them as
// numbers). The sidecar names them when it refuses configuration (a control plane newer than it
// is the usual cause, docs/upgrades.md); the contract tests check with a release's schema that
// what is sent to it holds none. Pure; any thread.

#include <string>

#include "google/protobuf/message.h"

namespace meshlet::config {

// The first unknown field or enum value in `message` or a message inside it, with the path to
// it from `message`: "field 99 of meshlet.xds.Cluster", "load_assignment.endpoints[1].health:
// value 7 of meshlet.xds.Endpoint.Health". Empty when there is none.
std::string FirstUnknownContent(const google::protobuf::Message& message);

}  // namespace meshlet::config
