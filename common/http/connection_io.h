#pragma once

// ConnectionIo: the CodecIo (codec.h) of a codec that sits directly on a net::Connection, as
// every owner of a connection and its codec writes it: writes go to the connection, read-disable
// is counted by the connection, Close(flush) is CloseMode::kFlush, Close(!flush) kNoFlush.
//
// Ownership: refers to the connection, which must outlive every codec given this ConnectionIo;
// declare it after the connection and before the codec. Loop thread only, like the connection.

#include <cstddef>

#include "common/http/codec.h"
#include "common/net/buffer.h"
#include "common/net/connection.h"

namespace meshlet::http {

class ConnectionIo final : public CodecIo {
 public:
  explicit ConnectionIo(net::Connection& connection) : connection_(connection) {}

  void Write(net::Buffer& data) override { connection_.Write(data); }
  size_t UnsentBytes() const override { return connection_.buffered_write_bytes(); }
  void ReadDisable(bool disable) override {
    disable ? connection_.ReadDisable() : connection_.ReadEnable();
  }
  void Close(bool flush) override {
    connection_.Close(flush ? net::CloseMode::kFlush : net::CloseMode::kNoFlush);
  }

 private:
  net::Connection& connection_;
};

}  // namespace meshlet::http
