#include "tests/e2e/testapp/acceptor.h"

#include <utility>
#include <vector>

namespace meshlet::testapp {

Acceptor::Acceptor(event::Loop& loop, size_t max_connections, Factory factory)
    : loop_(loop), max_connections_(max_connections), factory_(std::move(factory)) {}

Acceptor::~Acceptor() { connections_.clear(); }

absl::StatusOr<std::unique_ptr<Acceptor>> Acceptor::Create(event::Loop& loop,
                                                           const net::Address& address,
                                                           size_t max_connections,
                                                           Factory factory) {
  std::unique_ptr<Acceptor> acceptor(new Acceptor(loop, max_connections, std::move(factory)));
  Acceptor* raw = acceptor.get();
  auto listener = net::Listener::Create(
      loop, address, net::ListenerOptions{},
      [raw](std::unique_ptr<net::Connection> connection) { raw->OnAccept(std::move(connection)); });
  if (!listener.ok()) return listener.status();
  acceptor->listener_ = *std::move(listener);
  return acceptor;
}

void Acceptor::OnAccept(std::unique_ptr<net::Connection> connection) {
  if (shutting_down_ || connections_.size() >= max_connections_) {
    connection->Close(net::CloseMode::kNoFlush);
    return;
  }
  ++accepted_;
  std::unique_ptr<ServedConnection> served = factory_(std::move(connection));
  ServedConnection* raw = served.get();
  connections_.emplace(raw, std::move(served));
}

void Acceptor::Remove(ServedConnection* connection) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  loop_.DeferDelete(std::move(it->second));
  connections_.erase(it);
}

void Acceptor::Shutdown() {
  shutting_down_ = true;
  listener_->StopAccepting();
  // Shutdown() may close a connection, which removes it from the map.
  std::vector<ServedConnection*> open;
  for (auto& [raw, connection] : connections_) open.push_back(raw);
  for (ServedConnection* c : open) {
    if (connections_.count(c) != 0) c->Shutdown();
  }
}

}  // namespace meshlet::testapp
