#include "common/net/plaintext_transport.h"

#include "common/net/buffer.h"
#include "gtest/gtest.h"

namespace meshlet::net {
namespace {

TEST(PlaintextTransportTest, MovesBytesWithoutCopying) {
  std::unique_ptr<Transport> t = PlaintextTransport::Factory()();
  Buffer out;
  ASSERT_TRUE(t->Start(Address(), out).ok());
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(t->HandshakeComplete());
  EXPECT_TRUE(t->peer().alpn.empty());

  Buffer wire_in(std::string(Buffer::kBlockSize, 'r'));
  const char* block = wire_in.FrontSlice().data();
  Buffer app_in;
  ASSERT_TRUE(t->OnReceived(wire_in, app_in, out).ok());
  EXPECT_TRUE(wire_in.empty());
  EXPECT_EQ(app_in.FrontSlice().data(), block);
  EXPECT_TRUE(out.empty());

  Buffer app_out(std::string(Buffer::kBlockSize, 'w'));
  block = app_out.FrontSlice().data();
  ASSERT_TRUE(t->Send(app_out, out).ok());
  EXPECT_TRUE(app_out.empty());
  EXPECT_EQ(out.FrontSlice().data(), block);

  Buffer shutdown;
  t->Shutdown(shutdown);
  EXPECT_TRUE(shutdown.empty());
}

}  // namespace
}  // namespace meshlet::net
