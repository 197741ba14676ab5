#pragma once

// StoredServices: the Services in the store, parsed, for the reference and address checks of a
// policy write (policy::Validate). Each call lists the Services as the store has them now, as
// before every write, but parses again only those written since the previous call (a Service's
// revision changes with every write of it): a write no longer costs a parse of every stored
// Service.
//
// Threading: not thread-safe; PolicyApi calls it from the one thread that runs its store calls
// at a time (api_server.h).

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "control-plane/policy/snapshot.h"
#include "control-plane/store/store.h"

namespace meshlet::controlplane::api {

class StoredServices {
 public:
  // The Services `store` holds now, in the order it lists them, in `services` of the result
  // (the rest of it empty). A stored Service that does not parse is left out; when the store
  // cannot list them, there are none. Valid until the next call.
  const policy::PolicySnapshot& Current(const Store& store);

 private:
  struct Parsed {
    int64_t revision = 0;
    std::shared_ptr<meshlet::policy::Service> service;  // null: it did not parse
  };
  policy::PolicySnapshot snapshot_;
  absl::flat_hash_map<std::string, Parsed> parsed_;  // by namespace/name
};

}  // namespace meshlet::controlplane::api
