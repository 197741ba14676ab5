// Real HTTP/2 peers against ServerCodec over real sockets: nghttp (nghttp2-client), curl with
// prior knowledge, and an h2load smoke. The server answers every request with a fixed body that
// includes the request's body size, plus trailers.

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/event/loop.h"
#include "common/http/h2/codec.h"
#include "common/net/address.h"
#include "common/net/buffer.h"
#include "common/net/connection.h"
#include "common/net/listener.h"
#include "gtest/gtest.h"

namespace meshlet::http::h2 {
namespace {

constexpr absl::string_view kBody = "hello from meshlet\n";

// One accepted connection: bytes → ServerCodec → a responder per stream.
class Session : public net::ConnectionCallbacks, public CodecIo, public ServerConnectionCallbacks {
 public:
  explicit Session(std::unique_ptr<net::Connection> conn) : conn_(std::move(conn)) {
    conn_->SetCallbacks(this);
    codec_ = std::make_unique<ServerCodec>(*this, *this);
  }
  ~Session() override {
    codec_.reset();
    conn_->SetCallbacks(nullptr);
  }

  // net::ConnectionCallbacks
  void OnData(net::Buffer& data, bool end_stream) override {
    absl::Status s = codec_->Dispatch(data);
    if (!s.ok() || end_stream) conn_->Close(net::CloseMode::kFlush);
  }
  void OnWriteHighWatermark() override { codec_->OnUnderlyingWriteHighWatermark(); }
  void OnWriteLowWatermark() override { codec_->OnUnderlyingWriteLowWatermark(); }
  void OnClose(net::CloseReason, const absl::Status&) override {
    if (on_close) on_close(this);
  }

  // CodecIo
  void Write(net::Buffer& data) override { conn_->Write(data); }
  size_t UnsentBytes() const override { return conn_->buffered_write_bytes(); }
  void ReadDisable(bool disable) override { disable ? conn_->ReadDisable() : conn_->ReadEnable(); }
  void Close(bool flush) override {
    conn_->Close(flush ? net::CloseMode::kFlush : net::CloseMode::kNoFlush);
  }

  // ServerConnectionCallbacks
  StreamDecoder& NewStream(StreamEncoder& encoder) override {
    responders_.push_back(std::make_unique<Responder>(encoder));
    return *responders_.back();
  }

  std::function<void(Session*)> on_close;

 private:
  class Responder : public StreamDecoder {
   public:
    explicit Responder(StreamEncoder& encoder) : encoder_(encoder) {}
    void DecodeHeaders(HeaderMapPtr headers, bool end_stream) override {
      path_ = std::string(headers->Get(":path").value_or(""));
      if (end_stream) Respond();
    }
    void DecodeData(net::Buffer& data, bool end_stream) override {
      received_ += data.length();
      data.Drain(data.length());
      if (end_stream) Respond();
    }
    void DecodeTrailers(HeaderMapPtr) override { Respond(); }

   private:
    void Respond() {
      encoder_.EncodeHeaders(HeaderMap{{":status", "200"}, {"content-type", "text/plain"}}, false);
      net::Buffer body(absl::StrCat(kBody, "path ", path_, " received ", received_, " bytes\n"));
      encoder_.EncodeData(body, false);
      encoder_.EncodeTrailers(HeaderMap{{"x-meshlet-trailer", "done"}});
    }
    StreamEncoder& encoder_;
    std::string path_;
    size_t received_ = 0;
  };

  std::unique_ptr<net::Connection> conn_;
  // Responders outlive the codec (declared first, destroyed last).
  std::vector<std::unique_ptr<Responder>> responders_;
  std::unique_ptr<ServerCodec> codec_;
};

class InteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto address = net::Address::Parse("127.0.0.1:0");
    ASSERT_TRUE(address.ok());
    auto listener = net::Listener::Create(
        loop_, *address, net::ListenerOptions{}, [this](std::unique_ptr<net::Connection> conn) {
          auto session = std::make_unique<Session>(std::move(conn));
          session->on_close = [this](Session* s) {
            for (auto& owned : sessions_) {
              if (owned.get() == s) loop_.DeferDelete(std::move(owned));
            }
          };
          sessions_.push_back(std::move(session));
        });
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_ = std::move(*listener);
    port_ = listener_->address().port();
  }
  void TearDown() override {
    listener_.reset();
    sessions_.clear();
    loop_.RunUntilIdle();
  }

  struct Result {
    int exit_code = -1;
    std::string output;
  };

  // Runs `command` on another thread while this thread runs the loop.
  Result Run(const std::string& command) {
    Result result;
    std::atomic<bool> done{false};
    std::thread runner([&] {
      FILE* f = popen((command + " 2>&1").c_str(), "r");
      if (f != nullptr) {
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0) result.output.append(buf, n);
        int status = pclose(f);
        result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      done = true;
      loop_.Post([] {});  // wake the loop so RunUntil sees `done`
    });
    bool finished = loop_.RunUntil([&] { return done.load(); }, std::chrono::seconds(20));
    runner.join();
    EXPECT_TRUE(finished) << command;
    return result;
  }

  static void RequireTool(const char* path, const char* package) {
    if (access(path, X_OK) != 0) {
      FAIL() << path << " is missing (Debian package " << package << "); `./dev deps` installs it";
    }
  }

  std::string Url(absl::string_view path) { return absl::StrCat("http://127.0.0.1:", port_, path); }

  event::Loop loop_;
  std::unique_ptr<net::Listener> listener_;
  std::vector<std::unique_ptr<Session>> sessions_;
  int port_ = 0;
};

TEST_F(InteropTest, NghttpGetAndPostWithTrailers) {
  RequireTool("/usr/bin/nghttp", "nghttp2-client");
  Result r = Run(absl::StrCat("/usr/bin/nghttp -v ", Url("/get")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, ":status: 200")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "hello from meshlet")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "path /get received 0 bytes")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "x-meshlet-trailer: done")) << r.output;

  // Upload 1 MB: exercises flow control both ways across real sockets.
  std::string file = absl::StrCat(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp",
                                  "/upload-", getpid());
  {
    std::ofstream out(file, std::ios::binary);
    out << std::string(1000000, 'u');
  }
  r = Run(absl::StrCat("/usr/bin/nghttp -v -d ", file, " ", Url("/post")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "path /post received 1000000 bytes")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "x-meshlet-trailer: done")) << r.output;
  unlink(file.c_str());

  // Several concurrent streams on one connection.
  r = Run(absl::StrCat("/usr/bin/nghttp ", Url("/a"), " ", Url("/b"), " ", Url("/c")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "path /a received"));
  EXPECT_TRUE(absl::StrContains(r.output, "path /c received"));
}

TEST_F(InteropTest, CurlPriorKnowledge) {
  RequireTool("/usr/bin/curl", "curl");
  Result r = Run(absl::StrCat("/usr/bin/curl -sS --http2-prior-knowledge -i ", Url("/curl")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(absl::StartsWith(r.output, "HTTP/2 200")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "content-type: text/plain")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "path /curl received 0 bytes")) << r.output;

  r = Run(
      absl::StrCat("/usr/bin/curl -sS --http2-prior-knowledge --data-binary hello ", Url("/post")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "path /post received 5 bytes")) << r.output;
}

TEST_F(InteropTest, H2loadSmoke) {
  RequireTool("/usr/bin/h2load", "nghttp2-client");
  Result r = Run(absl::StrCat("/usr/bin/h2load -n 2000 -c 4 -m 16 ", Url("/load")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "2000 succeeded, 0 failed, 0 errored")) << r.output;
}

}  // namespace
}  // namespace meshlet::http::h2
