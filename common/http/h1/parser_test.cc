#include "common/http/h1/parser.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/http/h1/parser_test_util.h"
#include "gtest/gtest.h"

namespace meshlet::http::h1 {
namespace {

using testing::ParseOptions;
using testing::ParseOutcome;
using testing::ParsePieces;
using testing::ParseSplit;
using testing::ParseWhole;
using testing::RecordingVisitor;
using Type = Parser::Type;

// One table row: the bytes, and either the full expected record (valid messages) or just the
// expected outcome suffix such as "error kBareCr" (invalid ones).
struct Case {
  const char* name;
  Type type;
  std::string input;
  std::string expected;  // full record, or a suffix when `suffix_only`
  bool suffix_only = false;
  const char* request_method = nullptr;
  bool finish = false;
};

Case Req(const char* name, std::string input, std::string expected) {
  return {name, Type::kRequest, std::move(input), std::move(expected)};
}
#define CHUNKED "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"

Case BadReq(const char* name, std::string input, ParserError error) {
  return {name, Type::kRequest, std::move(input), absl::StrCat("=> error ", ParserErrorName(error)),
          true};
}
Case Resp(const char* name, std::string input, std::string expected, const char* method = "GET",
          bool finish = false) {
  return {name, Type::kResponse, std::move(input), std::move(expected), false, method, finish};
}
Case BadResp(const char* name, std::string input, ParserError error) {
  return {name,
          Type::kResponse,
          std::move(input),
          absl::StrCat("=> error ", ParserErrorName(error)),
          true,
          "GET"};
}

// A literal with embedded NULs, whole.
template <size_t N>
std::string S(const char (&literal)[N]) {
  return std::string(literal, N - 1);
}

const std::vector<Case>& Cases() {
  static const auto* cases = new std::vector<Case>{
      // ---- valid requests ----
      Req("simple_get", "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
          "begin|req GET / 1.1|h Host: a|hc none ka=1|done => ok"),
      Req("post_content_length",
          "POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
          "begin|req POST /p?q=1 1.1|h Host: a|h Content-Length: 5|hc cl=5 ka=1|body hello|done"
          " => ok"),
      Req("content_length_zero", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
          "begin|req POST / 1.1|h Host: a|h Content-Length: 0|hc cl=0 ka=1|done => ok"),
      Req("chunked_with_extensions_and_trailers",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
          "5;ext=1\r\nhello\r\n6 ; a=\"b c\"\r\n world\r\n000A\r\n0123456789\r\n"
          "0\r\nX-Trailer: t\r\nX-Other:  two words \r\n\r\n",
          "begin|req POST / 1.1|h Host: a|h Transfer-Encoding: chunked|hc chunked ka=1|chunk 5|"
          "body hello|chunk 6|body  world|chunk 10|body 0123456789|t X-Trailer: t|"
          "t X-Other: two words|done => ok"),
      Req("chunked_extensions_bws_quoted_pairs_obs_text",
          CHUNKED "5 \t; a = b ;c=\"q \\\" \\\\ \xe9\"\t;d\r\nhello\r\n0\r\n\r\n",
          "begin|req POST / 1.1|h Host: a|h Transfer-Encoding: chunked|hc chunked ka=1|chunk 5|"
          "body hello|done => ok"),
      Req("chunked_no_trailers",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
          "begin|req POST / 1.1|h Host: a|h Transfer-Encoding: chunked|hc chunked ka=1|chunk 3|"
          "body abc|done => ok"),
      Req("te_case_and_ows",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \t ChUnKeD \r\n\r\n0\r\n\r\n",
          "begin|req POST / 1.1|h Host: a|h Transfer-Encoding: ChUnKeD|hc chunked ka=1|done => ok"),
      Req("te_list_empty_elements",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n0\r\n\r\n",
          "begin|req POST / 1.1|h Host: a|h Transfer-Encoding: , chunked|hc chunked ka=1|done"
          " => ok"),
      Req("http10_default_close", "GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n",
          "begin|req GET / 1.0|hc none ka=0|done => closed"),
      Req("http10_keep_alive",
          "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
          "begin|req GET / 1.0|h Connection: Keep-Alive|hc none ka=1|done|begin|req GET /2 1.0|"
          "hc none ka=0|done => closed"),
      Req("http11_connection_close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n",
          "begin|req GET / 1.1|h Host: a|h Connection: foo, close|hc none ka=0|done => closed"),
      Req("ows_trimmed_inner_kept",
          "GET / HTTP/1.1\r\nHost: \t a \t\r\nX-A: \t a b \t\r\nX-Empty:\r\nX-Sp:   \r\n\r\n",
          "begin|req GET / 1.1|h Host: a|h X-A: a b|h X-Empty: |h X-Sp: |hc none ka=1|done => ok"),
      Req("obs_text_value", "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n",
          "begin|req GET / 1.1|h Host: a|h X: caf\\303\\251|hc none ka=1|done => ok"),
      Req("no_ows", "GET / HTTP/1.1\r\nHost:a\r\n\r\n",
          "begin|req GET / 1.1|h Host: a|hc none ka=1|done => ok"),
      Req("leading_empty_lines", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
          "begin|req GET / 1.1|h Host: a|hc none ka=1|done => ok"),
      Req("expect_continue",
          "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nok",
          "begin|req PUT /x 1.1|h Host: a|h Expect: 100-Continue|h Content-Length: 2|"
          "hc cl=2 ka=1 100c|body ok|done => ok"),
      Req("upgrade_websocket",
          "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
          "\x81\x05hello",
          "begin|req GET /ws 1.1|h Host: a|h Connection: Upgrade|h Upgrade: websocket|"
          "hc none ka=1 upgrade|done => upgraded"),
      Req("upgrade_without_connection_option",
          "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
          "begin|req GET / 1.1|h Host: a|h Upgrade: websocket|hc none ka=1|done => ok"),
      Req("upgrade_ignored_in_http10",
          "GET / HTTP/1.0\r\nConnection: upgrade, keep-alive\r\nUpgrade: h2c\r\n\r\n",
          "begin|req GET / 1.0|h Connection: upgrade, keep-alive|h Upgrade: h2c|hc none ka=1|"
          "done => ok"),
      Req("connect", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nTLS...",
          "begin|req CONNECT example.com:443 1.1|h Host: example.com:443|hc none ka=1 upgrade|"
          "done => upgraded"),
      Req("connect_ipv6", "CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n",
          "begin|req CONNECT [::1]:8443 1.1|h Host: [::1]:8443|hc none ka=1 upgrade|done"
          " => upgraded"),
      Req("options_asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
          "begin|req OPTIONS * 1.1|h Host: a|hc none ka=1|done => ok"),
      Req("absolute_form", "GET http://a.example/b?c HTTP/1.1\r\nHost: a.example\r\n\r\n",
          "begin|req GET http://a.example/b?c 1.1|h Host: a.example|hc none ka=1|done => ok"),
      Req("absolute_form_https_any_case_port_query",
          "GET HTTPS://A.example:8443?c HTTP/1.1\r\nHost: A.example:8443\r\n\r\n",
          "begin|req GET HTTPS://A.example:8443?c 1.1|h Host: A.example:8443|hc none ka=1|done"
          " => ok"),
      Req("absolute_form_ipv6", "GET http://[::1]:8080/p HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
          "begin|req GET http://[::1]:8080/p 1.1|h Host: [::1]:8080|hc none ka=1|done => ok"),
      Req("options_absolute_form", "OPTIONS http://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n",
          "begin|req OPTIONS http://a.example 1.1|h Host: a.example|hc none ka=1|done => ok"),
      // Host = uri-host [ ":" port ] (RFC 9112 3.2, RFC 3986 3.2.2).
      Req("host_ipv6_port", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
          "begin|req GET / 1.1|h Host: [::1]:8080|hc none ka=1|done => ok"),
      Req("host_ipv4_max_port", "GET / HTTP/1.1\r\nHost: 10.0.0.1:65535\r\n\r\n",
          "begin|req GET / 1.1|h Host: 10.0.0.1:65535|hc none ka=1|done => ok"),
      Req("host_empty_port", "GET / HTTP/1.1\r\nHost: a:\r\n\r\n",
          "begin|req GET / 1.1|h Host: a:|hc none ka=1|done => ok"),
      Req("host_empty", "GET / HTTP/1.1\r\nHost:\r\n\r\n",
          "begin|req GET / 1.1|h Host: |hc none ka=1|done => ok"),
      Req("host_pct_encoded_and_sub_delims",
          "GET / HTTP/1.1\r\nHost: caf%C3%A9!$&'()*+;=~_.example:80\r\n\r\n",
          "begin|req GET / 1.1|h Host: caf%C3%A9!$&\\'()*+;=~_.example:80|hc none ka=1|done => ok"),
      Req("extension_method", "PURGE /cache HTTP/1.1\r\nHost: a\r\n\r\n",
          "begin|req PURGE /cache 1.1|h Host: a|hc none ka=1|done => ok"),
      Req("duplicate_identical_content_length",
          "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
          "begin|req POST / 1.1|h Host: a|h Content-Length: 3|h Content-Length: 3|hc cl=3 ka=1|"
          "body abc|done => ok"),
      Req("content_length_identical_list",
          "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3 , 3\r\n\r\nabc",
          "begin|req POST / 1.1|h Host: a|h Content-Length: 3 , 3|hc cl=3 ka=1|body abc|done"
          " => ok"),
      Req("content_length_leading_zeros",
          "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0003\r\n\r\nabc",
          "begin|req POST / 1.1|h Host: a|h Content-Length: 0003|hc cl=3 ka=1|body abc|done"
          " => ok"),
      Req("pipelined",
          "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
          "\r\nabcPOST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0"
          "\r\n\r\nGET /4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /ignored",
          "begin|req GET /1 1.1|h Host: a|hc none ka=1|done|"
          "begin|req POST /2 1.1|h Host: a|h Content-Length: 3|hc cl=3 ka=1|body abc|done|"
          "begin|req POST /3 1.1|h Host: a|h Transfer-Encoding: chunked|hc chunked ka=1|chunk 2|"
          "body xy|done|begin|req GET /4 1.1|h Host: a|h Connection: close|hc none ka=0|done"
          " => closed"),
      Req("incomplete_is_fine_until_finish", "GET / HTTP/1.1\r\nHost: a\r\n",
          "begin|req GET / 1.1|h Host: a => ok"),

      // ---- request smuggling vectors ----
      BadReq("cl_then_te",
             "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n"
             "\r\n0\r\n\r\n",
             ParserError::kContentLengthAndTransferEncoding),
      BadReq("te_then_cl",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n"
             "\r\n0\r\n\r\n",
             ParserError::kContentLengthAndTransferEncoding),
      BadReq("te_xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
             ParserError::kUnsupportedTransferEncoding),
      BadReq("te_chunked_not_last",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
             ParserError::kInvalidTransferEncoding),
      BadReq("te_split_over_lines_not_last",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
             "Transfer-Encoding: gzip\r\n\r\n",
             ParserError::kInvalidTransferEncoding),
      BadReq("te_gzip_chunked",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
             ParserError::kUnsupportedTransferEncoding),
      BadReq("te_chunked_twice",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
             ParserError::kInvalidTransferEncoding),
      BadReq("te_chunked_with_params",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
             ParserError::kInvalidTransferEncoding),
      BadReq("te_quoted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
             ParserError::kInvalidTransferEncoding),
      BadReq("te_empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n",
             ParserError::kInvalidTransferEncoding),
      BadReq("te_space_before_colon",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
             ParserError::kWhitespaceBeforeColon),
      BadReq("te_tab_before_colon",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n",
             ParserError::kWhitespaceBeforeColon),
      BadReq("te_vertical_tab",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0b"
             "chunked\r\n\r\n",
             ParserError::kInvalidHeaderValue),
      BadReq("te_in_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
             ParserError::kInvalidTransferEncoding),
      BadReq("te_obs_fold", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
             ParserError::kObsFold),
      BadReq("double_cl_differs",
             "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
             ParserError::kConflictingContentLength),
      BadReq("cl_list_differs", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\nabcd",
             ParserError::kConflictingContentLength),
      BadReq("cl_plus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
             ParserError::kInvalidContentLength),
      BadReq("cl_minus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
             ParserError::kInvalidContentLength),
      BadReq("cl_hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc",
             ParserError::kInvalidContentLength),
      BadReq("cl_inner_space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
             ParserError::kInvalidContentLength),
      BadReq("cl_empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
             ParserError::kInvalidContentLength),
      BadReq("cl_empty_list_element", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3,\r\n\r\n",
             ParserError::kInvalidContentLength),
      BadReq("cl_overflow",
             "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
             ParserError::kInvalidContentLength),
      BadReq("obs_fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n",
             ParserError::kObsFold),
      BadReq("whitespace_after_start_line", "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
             ParserError::kObsFold),
      BadReq("nul_in_value", S("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"),
             ParserError::kInvalidHeaderValue),
      BadReq("nul_in_name", S("GET / HTTP/1.1\r\nHost: a\r\nX\0Y: b\r\n\r\n"),
             ParserError::kInvalidHeaderName),
      BadReq("nul_in_target", S("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n"),
             ParserError::kInvalidTarget),
      BadReq("nul_in_method", S("G\0T / HTTP/1.1\r\nHost: a\r\n\r\n"), ParserError::kInvalidMethod),
      BadReq("del_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n",
             ParserError::kInvalidHeaderValue),
      BadReq("bare_cr_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
             ParserError::kBareCr),
      BadReq("bare_cr_ends_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n",
             ParserError::kBareCr),
      BadReq("bare_cr_in_target", "GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n", ParserError::kBareCr),
      BadReq("bare_cr_in_name", "GET / HTTP/1.1\r\nHost: a\r\nX\rY: b\r\n\r\n",
             ParserError::kBareCr),
      BadReq("bare_cr_as_line_end", "GET / HTTP/1.1\rHost: a\r\n\r\n", ParserError::kBareCr),
      BadReq("bare_cr_before_message", "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", ParserError::kBareCr),
      BadReq("bare_lf_request_line", "GET / HTTP/1.1\nHost: a\r\n\r\n", ParserError::kBareLf),
      BadReq("bare_lf_header", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", ParserError::kBareLf),
      BadReq("bare_lf_end_of_headers", "GET / HTTP/1.1\r\nHost: a\r\n\n", ParserError::kBareLf),
      BadReq("bare_lf_before_message", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", ParserError::kBareLf),
      BadReq("cl_then_smuggled_request_after_bare_lf",
             "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\nX: y\r\n\r\n", ParserError::kBareLf),

      // ---- other invalid requests ----
      BadReq("method_bad_char", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", ParserError::kInvalidMethod),
      BadReq("method_empty", " / HTTP/1.1\r\nHost: a\r\n\r\n", ParserError::kInvalidMethod),
      BadReq("method_tab_separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidMethod),
      BadReq("double_space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", ParserError::kInvalidTarget),
      BadReq("target_fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("target_non_ascii", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("target_relative", "GET foo HTTP/1.1\r\nHost: a\r\n\r\n", ParserError::kInvalidTarget),
      BadReq("asterisk_not_options", "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("connect_origin_form", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("connect_no_port", "CONNECT host HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("connect_empty_port", "CONNECT host: HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("connect_empty_host", "CONNECT :443 HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("connect_userinfo", "CONNECT u:p@a.example:443 HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("connect_port_too_large", "CONNECT a.example:65536 HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("connect_ipv6_unbracketed", "CONNECT ::1:443 HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      // Targets in a form HTTP does not define are refused, not rewritten into a path.
      BadReq("target_authority_form_not_connect", "GET a.example:80 HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("target_http_empty_host", "GET http:/admin HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("target_http_empty_authority", "GET http:///admin HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("target_http_no_slashes", "GET http:a.example/x HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("target_http_port_only", "GET http://:80/x HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("target_other_scheme", "GET ftp://a.example/x HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("target_urn", "GET urn:isbn:0451450523 HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("target_absolute_userinfo",
             "GET http://u:p@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("target_absolute_two_at", "GET http://a@b@c/ HTTP/1.1\r\nHost: c\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("target_absolute_bad_port", "GET http://a.example:x/ HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("target_absolute_comma", "GET http://a,b/ HTTP/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidTarget),
      BadReq("http09", "GET /\r\n\r\n", ParserError::kInvalidVersion),
      BadReq("version_lowercase", "GET / http/1.1\r\nHost: a\r\n\r\n",
             ParserError::kInvalidVersion),
      BadReq("version_trailing_space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
             ParserError::kInvalidVersion),
      BadReq("version_two_digits", "GET / HTTP/1.10\r\nHost: a\r\n\r\n",
             ParserError::kInvalidVersion),
      BadReq("version_2", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", ParserError::kVersionNotSupported),
      BadReq("version_1_2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", ParserError::kVersionNotSupported),
      BadReq("version_0_9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", ParserError::kVersionNotSupported),
      BadReq("missing_host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", ParserError::kMissingHost),
      BadReq("duplicate_host", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
             ParserError::kDuplicateHost),
      BadReq("duplicate_host_http10", "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
             ParserError::kDuplicateHost),
      BadReq("duplicate_host_second_invalid", "GET / HTTP/1.1\r\nHost: a\r\nHost: b, c\r\n\r\n",
             ParserError::kDuplicateHost),
      // RFC 9112 3.2: a Host that is not uri-host [ ":" port ] is a 400.
      BadReq("host_list", "GET / HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n",
             ParserError::kInvalidHost),
      BadReq("host_comma", "GET / HTTP/1.1\r\nHost: a.example,b.example\r\n\r\n",
             ParserError::kInvalidHost),
      BadReq("host_space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", ParserError::kInvalidHost),
      BadReq("host_path", "GET / HTTP/1.1\r\nHost: a.example/admin\r\n\r\n",
             ParserError::kInvalidHost),
      BadReq("host_userinfo", "GET / HTTP/1.1\r\nHost: u:p@a.example:80\r\n\r\n",
             ParserError::kInvalidHost),
      BadReq("host_port_not_numeric", "GET / HTTP/1.1\r\nHost: a.example:http\r\n\r\n",
             ParserError::kInvalidHost),
      BadReq("host_port_too_large", "GET / HTTP/1.1\r\nHost: a.example:65536\r\n\r\n",
             ParserError::kInvalidHost),
      BadReq("host_ipv6_unbracketed", "GET / HTTP/1.1\r\nHost: ::1\r\n\r\n",
             ParserError::kInvalidHost),
      BadReq("host_bad_pct_encoding", "GET / HTTP/1.1\r\nHost: a%2.example\r\n\r\n",
             ParserError::kInvalidHost),
      BadReq("host_obs_text", "GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n",
             ParserError::kInvalidHost),
      BadReq("host_invalid_http10", "GET / HTTP/1.0\r\nHost: a/b\r\n\r\n",
             ParserError::kInvalidHost),
      BadReq("host_invalid_with_absolute_form",
             "GET http://a.example/ HTTP/1.1\r\nHost: u@a.example\r\n\r\n",
             ParserError::kInvalidHost),
      BadReq("host_invalid_with_connect",
             "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443/x\r\n\r\n",
             ParserError::kInvalidHost),
      BadReq("space_in_name", "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
             ParserError::kWhitespaceBeforeColon),
      BadReq("separator_in_name", "GET / HTTP/1.1\r\nHost: a\r\nBad(Name): x\r\n\r\n",
             ParserError::kInvalidHeaderName),
      BadReq("no_colon", "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
             ParserError::kInvalidHeaderName),
      BadReq("empty_name", "GET / HTTP/1.1\r\nHost: a\r\n: value\r\n\r\n",
             ParserError::kInvalidHeaderName),
      BadReq("ctl_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n",
             ParserError::kInvalidHeaderValue),
      BadReq("chunk_size_not_hex",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
             ParserError::kInvalidChunkSize),
      BadReq("chunk_size_empty",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
             ParserError::kInvalidChunkSize),
      BadReq("chunk_size_negative",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n",
             ParserError::kInvalidChunkSize),
      BadReq("chunk_size_0x",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n",
             ParserError::kInvalidChunkSize),
      BadReq("chunk_size_trailing_space",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n",
             ParserError::kInvalidChunkSize),
      BadReq("chunk_size_overflow",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
             "10000000000000000\r\n",
             ParserError::kInvalidChunkSize),
      BadReq("chunk_extension_ctl",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x01\r\n",
             ParserError::kInvalidChunkSize),
      // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ), strictly:
      // parsers that differ on the rest are a smuggling vector.
      BadReq("chunk_extension_bare_semicolon", CHUNKED "5;\r\nhello\r\n0\r\n\r\n",
             ParserError::kInvalidChunkSize),
      BadReq("chunk_extension_empty_name", CHUNKED "5;=1\r\nhello\r\n0\r\n\r\n",
             ParserError::kInvalidChunkSize),
      BadReq("chunk_extension_second_empty", CHUNKED "5;a=1;\r\nhello\r\n0\r\n\r\n",
             ParserError::kInvalidChunkSize),
      BadReq("chunk_extension_htab_in_name", CHUNKED "5;a\tb\r\nhello\r\n0\r\n\r\n",
             ParserError::kInvalidChunkSize),
      BadReq("chunk_extension_space_in_name", CHUNKED "5;a b\r\nhello\r\n0\r\n\r\n",
             ParserError::kInvalidChunkSize),
      BadReq("chunk_extension_obs_text_in_token", CHUNKED "5;a=\xff\r\nhello\r\n0\r\n\r\n",
             ParserError::kInvalidChunkSize),
      BadReq("chunk_extension_empty_value", CHUNKED "5;a=\r\nhello\r\n0\r\n\r\n",
             ParserError::kInvalidChunkSize),
      BadReq("chunk_extension_unterminated_quote", CHUNKED "5;a=\"b\r\nhello\r\n0\r\n\r\n",
             ParserError::kInvalidChunkSize),
      BadReq("chunk_extension_ctl_in_quote", CHUNKED "5;a=\"b\x7f\"\r\nhello\r\n0\r\n\r\n",
             ParserError::kInvalidChunkSize),
      BadReq("chunk_extension_text_after_quote", CHUNKED "5;a=\"b\"c\r\nhello\r\n0\r\n\r\n",
             ParserError::kInvalidChunkSize),
      BadReq("chunk_data_too_long",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n",
             ParserError::kInvalidChunkData),
      BadReq("chunk_data_bare_lf",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n",
             ParserError::kBareLf),
      BadReq("chunk_data_bare_cr",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\rX",
             ParserError::kBareCr),
      BadReq("chunk_size_bare_lf",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n",
             ParserError::kBareLf),
      BadReq("trailer_obs_fold",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n"
             "\r\n",
             ParserError::kObsFold),
      BadReq("bad_second_pipelined",
             "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n",
             ParserError::kWhitespaceBeforeColon),

      // ---- responses ----
      Resp("response_content_length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
           "begin|status 1.1 200 OK|h Content-Length: 2|hc cl=2 ka=1|body hi|done => ok"),
      Resp("response_no_reason", "HTTP/1.1 204\r\n\r\n",
           "begin|status 1.1 204 |hc none ka=1|done => ok"),
      Resp("response_empty_reason", "HTTP/1.1 204 \r\n\r\n",
           "begin|status 1.1 204 |hc none ka=1|done => ok"),
      Resp("response_reason_chars", "HTTP/1.1 404 Not\tFound \xff\r\nContent-Length: 0\r\n\r\n",
           "begin|status 1.1 404 Not\\tFound \\377|h Content-Length: 0|hc cl=0 ka=1|done => ok"),
      Resp("response_chunked_trailers",
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n"
           "grpc-status: 0\r\n\r\n",
           "begin|status 1.1 200 OK|h Transfer-Encoding: chunked|hc chunked ka=1|chunk 4|"
           "body abcd|t grpc-status: 0|done => ok"),
      Resp("response_until_close", "HTTP/1.1 200 OK\r\n\r\nabc",
           "begin|status 1.1 200 OK|hc close ka=0|body abc|done => closed", "GET", true),
      Resp("response_until_close_empty", "HTTP/1.1 200 OK\r\n\r\n",
           "begin|status 1.1 200 OK|hc close ka=0|done => closed", "GET", true),
      Resp("response_to_head", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
           "begin|status 1.1 200 OK|h Content-Length: 100|hc none ka=1|done => ok", "HEAD"),
      Resp("response_to_head_chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
           "begin|status 1.1 200 OK|h Transfer-Encoding: chunked|hc none ka=1|done => ok", "HEAD"),
      Resp("response_304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
           "begin|status 1.1 304 Not Modified|h Content-Length: 10|hc none ka=1|done => ok"),
      Resp("response_100_then_200",
           "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
           "begin|status 1.1 100 Continue|hc none ka=1|done|begin|status 1.1 200 OK|"
           "h Content-Length: 1|hc cl=1 ka=1|body x|done => ok"),
      Resp("response_101",
           "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
           "\x81\x00",
           "begin|status 1.1 101 Switching Protocols|h Connection: upgrade|h Upgrade: websocket|"
           "hc none ka=1 upgrade|done => upgraded"),
      Resp("response_connect_200", "HTTP/1.1 200 Connection Established\r\n\r\nraw",
           "begin|status 1.1 200 Connection Established|hc none ka=1 upgrade|done => upgraded",
           "CONNECT"),
      Resp("response_connect_407", "HTTP/1.1 407 Auth\r\nContent-Length: 1\r\n\r\nx",
           "begin|status 1.1 407 Auth|h Content-Length: 1|hc cl=1 ka=1|body x|done => ok",
           "CONNECT"),
      Resp("response_http10_keep_alive",
           "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
           "begin|status 1.0 200 OK|h Connection: keep-alive|h Content-Length: 1|hc cl=1 ka=1|"
           "body x|done => ok"),
      Resp("response_http10_close", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
           "begin|status 1.0 200 OK|h Content-Length: 1|hc cl=1 ka=0|body x|done => closed"),
      Resp("responses_pipelined",
           "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 201 Created\r\n"
           "Content-Length: 0\r\n\r\n",
           "begin|status 1.1 200 OK|h Content-Length: 1|hc cl=1 ka=1|body a|done|"
           "begin|status 1.1 201 Created|h Content-Length: 0|hc cl=0 ka=1|done => ok"),
      BadResp("response_status_two_digits", "HTTP/1.1 20 OK\r\n\r\n", ParserError::kInvalidStatus),
      BadResp("response_status_099", "HTTP/1.1 099 X\r\n\r\n", ParserError::kInvalidStatus),
      BadResp("response_status_600", "HTTP/1.1 600 X\r\n\r\n", ParserError::kInvalidStatus),
      BadResp("response_status_letters", "HTTP/1.1 abc OK\r\n\r\n", ParserError::kInvalidStatus),
      BadResp("response_no_space_before_reason", "HTTP/1.1 200OK\r\n\r\n",
              ParserError::kInvalidStatus),
      BadResp("response_status_four_digits", "HTTP/1.1 2000 OK\r\n\r\n",
              ParserError::kInvalidStatus),
      BadResp("response_version_short", "HTTP/2 200 OK\r\n\r\n", ParserError::kInvalidVersion),
      BadResp("response_version_2", "HTTP/2.0 200 OK\r\n\r\n", ParserError::kVersionNotSupported),
      BadResp("response_version_only", "HTTP/1.1\r\n\r\n", ParserError::kInvalidStatus),
      BadResp("response_garbage", "hello\r\n\r\n", ParserError::kInvalidVersion),
      BadResp("response_reason_ctl", "HTTP/1.1 200 O\x01K\r\n\r\n", ParserError::kInvalidReason),
      BadResp("response_reason_bare_cr", "HTTP/1.1 200 O\rK\r\n\r\n", ParserError::kBareCr),
      BadResp("response_cl_and_te",
              "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
              ParserError::kContentLengthAndTransferEncoding),
      BadResp("response_te_gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
              ParserError::kUnsupportedTransferEncoding),
      BadResp("response_te_http10", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
              ParserError::kInvalidTransferEncoding),
      BadResp("response_cl_invalid", "HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n",
              ParserError::kInvalidContentLength),
  };
  return *cases;
}

ParseOptions OptionsFor(const Case& c) {
  ParseOptions options;
  options.type = c.type;
  options.request_method = c.request_method;
  options.finish = c.finish;
  return options;
}

void ExpectMatches(const Case& c, const ParseOutcome& out) {
  if (c.suffix_only) {
    EXPECT_TRUE(absl::EndsWith(out.log, c.expected)) << out.log;
  } else {
    EXPECT_EQ(out.log, c.expected);
  }
}

class ParserTableTest : public ::testing::TestWithParam<Case> {};

TEST_P(ParserTableTest, WholeInput) {
  const Case& c = GetParam();
  ParseOutcome out = ParseWhole(c.input, OptionsFor(c));
  ExpectMatches(c, out);
  EXPECT_EQ(out.violations, "") << out.log;
  EXPECT_LE(out.body_bytes, c.input.size());
}

// Every single split point, and one byte at a time, must give exactly the same record.
TEST_P(ParserTableTest, EverySplitGivesTheSameResult) {
  const Case& c = GetParam();
  ParseOptions options = OptionsFor(c);
  ParseOutcome whole = ParseWhole(c.input, options);
  bool compare_consumed = whole.status != Parser::Status::kError;
  for (size_t cut = 1; cut < c.input.size(); ++cut) {
    ParseOutcome split = ParseSplit(c.input, {cut}, options);
    ASSERT_EQ(split.log, whole.log) << "split at " << cut;
    ASSERT_EQ(split.violations, "") << "split at " << cut;
    if (compare_consumed) {
      ASSERT_EQ(split.consumed, whole.consumed) << "split at " << cut;
    }
  }
  std::vector<size_t> every_byte;
  for (size_t i = 1; i < c.input.size(); ++i) every_byte.push_back(i);
  ParseOutcome bytewise = ParseSplit(c.input, every_byte, options);
  EXPECT_EQ(bytewise.log, whole.log);
  if (compare_consumed) {
    EXPECT_EQ(bytewise.consumed, whole.consumed);
  }
}

INSTANTIATE_TEST_SUITE_P(Messages, ParserTableTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

TEST(ParserTest, ConsumedStopsAtUpgrade) {
  std::string head = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n";
  RecordingVisitor v;
  Parser parser(Type::kRequest, &v);
  std::string input = head + "raw bytes";
  EXPECT_EQ(parser.Execute(input), head.size());
  EXPECT_EQ(parser.status(), Parser::Status::kUpgraded);
  EXPECT_EQ(parser.Execute("more"), 0u);
  // The server declined the upgrade: keep parsing HTTP/1.
  parser.Resume();
  EXPECT_EQ(parser.Execute("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 27u);
  EXPECT_EQ(v.messages_completed(), 2);
}

// Found by parser_differential_fuzz: a 204 answering CONNECT did not open the tunnel (204 and
// 304 were decided before CONNECT), while the client codec opens it for any 2xx (RFC 9110
// 9.3.6); the parser then read the tunnel's bytes as HTTP/1 responses.
TEST(ParserTest, Any2xxToConnectOpensTheTunnel) {
  ParseOptions options;
  options.type = Type::kResponse;
  options.request_method = "CONNECT";
  for (const char* status : {"200 OK", "204 No Content", "206 Partial Content"}) {
    std::string head = absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Length: 3\r\n\r\n");
    ParseOutcome out = ParseWhole(head + "raw", options);
    EXPECT_EQ(out.status, Parser::Status::kUpgraded) << out.log;
    EXPECT_EQ(out.consumed, head.size()) << out.log;
    EXPECT_EQ(out.body_bytes, 0u) << out.log;
  }
  // 304 is no 2xx: no tunnel, and no content either.
  ParseOutcome out = ParseWhole("HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n", options);
  EXPECT_EQ(out.log,
            "begin|status 1.1 304 Not Modified|h Content-Length: 3|hc none ka=1|done => ok");
}

TEST(ParserTest, ConsumedStopsAtClose) {
  std::string first = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
  RecordingVisitor v;
  Parser parser(Type::kRequest, &v);
  EXPECT_EQ(parser.Execute(first + "GET / HTTP/1.1\r\n"), first.size());
  EXPECT_EQ(parser.status(), Parser::Status::kClosed);
  EXPECT_FALSE(parser.ShouldKeepAlive());
  EXPECT_EQ(parser.Finish(), ParserError::kOk);
}

TEST(ParserTest, FinishMidMessageIsIncomplete) {
  for (const char* input : {"GET / HTTP/1.1\r\nHo",
                            "POST / HTTP/1.1\r\nHost: a\r\n"
                            "Content-Length: 5\r\n\r\nab",
                            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "5\r\nab"}) {
    RecordingVisitor v;
    Parser parser(Type::kRequest, &v);
    parser.Execute(input);
    EXPECT_EQ(parser.status(), Parser::Status::kOk);
    EXPECT_EQ(parser.Finish(), ParserError::kIncompleteMessage) << input;
    EXPECT_EQ(parser.status(), Parser::Status::kError);
    EXPECT_EQ(HttpStatusForError(parser.error()), 400);
  }
  RecordingVisitor v;
  Parser parser(Type::kRequest, &v);
  EXPECT_EQ(parser.Finish(), ParserError::kOk);  // idle connection closed: fine
}

TEST(ParserTest, ErrorIsTerminal) {
  RecordingVisitor v;
  Parser parser(Type::kRequest, &v);
  parser.Execute("GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n");
  ASSERT_EQ(parser.status(), Parser::Status::kError);
  EXPECT_EQ(parser.error(), ParserError::kWhitespaceBeforeColon);
  EXPECT_EQ(parser.Execute("\r\n"), 0u);
  EXPECT_EQ(parser.error(), ParserError::kWhitespaceBeforeColon);
  EXPECT_EQ(parser.ToStatus().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(parser.ToStatus().message(),
            "kWhitespaceBeforeColon: whitespace between header field name and colon");
  parser.Reset();
  EXPECT_EQ(parser.status(), Parser::Status::kOk);
  EXPECT_EQ(parser.Execute("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 27u);
  EXPECT_EQ(parser.status(), Parser::Status::kOk);
}

TEST(ParserTest, HttpStatusForErrors) {
  EXPECT_EQ(HttpStatusForError(ParserError::kUriTooLong), 414);
  EXPECT_EQ(HttpStatusForError(ParserError::kStartLineTooLong), 414);
  EXPECT_EQ(HttpStatusForError(ParserError::kHeaderSectionTooLarge), 431);
  EXPECT_EQ(HttpStatusForError(ParserError::kTooManyHeaders), 431);
  EXPECT_EQ(HttpStatusForError(ParserError::kUnsupportedTransferEncoding), 501);
  EXPECT_EQ(HttpStatusForError(ParserError::kVersionNotSupported), 505);
  EXPECT_EQ(HttpStatusForError(ParserError::kContentLengthAndTransferEncoding), 400);
  EXPECT_EQ(HttpStatusForError(ParserError::kBareCr), 400);
  for (int e = 0; e <= static_cast<int>(ParserError::kCallbackAborted); ++e) {
    EXPECT_NE(ParserErrorName(static_cast<ParserError>(e)), "kUnknown") << e;
    EXPECT_NE(ParserErrorMessage(static_cast<ParserError>(e)), "unknown error") << e;
  }
}

// ---- limits ----

struct LimitCase {
  const char* name;
  ParserLimits limits;
  std::string input;
  std::string expected_suffix;
};

ParserLimits Limits(size_t start_line, size_t uri, size_t header_bytes, size_t count,
                    size_t chunk_ext) {
  ParserLimits l;
  l.max_start_line_bytes = start_line;
  l.max_uri_bytes = uri;
  l.max_header_bytes = header_bytes;
  l.max_header_count = count;
  l.max_chunk_extension_bytes = chunk_ext;
  return l;
}

TEST(ParserLimitsTest, LimitsGiveDistinctErrorsAtExactBoundaries) {
  const std::string host = "Host: a\r\n";  // 9 bytes
  const std::string chunked_head =
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::vector<LimitCase> cases = {
      // "GET /aaaa HTTP/1.1\r\n" is 20 bytes with a 5-byte target.
      {"uri_at_limit", Limits(100, 5, 100, 10, 10), "GET /aaaa HTTP/1.1\r\n" + host + "\r\n",
       "done => ok"},
      {"uri_over_limit", Limits(100, 4, 100, 10, 10), "GET /aaaa HTTP/1.1\r\n" + host + "\r\n",
       "=> error kUriTooLong"},
      {"start_line_at_limit", Limits(20, 100, 100, 10, 10),
       "GET /aaaa HTTP/1.1\r\n" + host + "\r\n", "done => ok"},
      {"start_line_over_limit", Limits(19, 100, 100, 10, 10),
       "GET /aaaa HTTP/1.1\r\n" + host + "\r\n", "=> error kStartLineTooLong"},
      {"start_line_without_lf", Limits(19, 100, 100, 10, 10), std::string(200, 'A'),
       "=> error kStartLineTooLong"},
      // Header section: "Host: a\r\n" (9) + "X: 12345\r\n" (10) + "\r\n" (2).
      {"headers_at_limit", Limits(100, 100, 9 + 10 + 2, 10, 10),
       "GET / HTTP/1.1\r\n" + host + "X: 12345\r\n\r\n", "done => ok"},
      {"headers_over_limit", Limits(100, 100, 9 + 10 + 1, 10, 10),
       "GET / HTTP/1.1\r\n" + host + "X: 12345\r\n\r\n", "=> error kHeaderSectionTooLarge"},
      {"header_line_never_ends", Limits(100, 100, 50, 10, 10),
       "GET / HTTP/1.1\r\n" + host + "X: " + std::string(100, 'v'),
       "=> error kHeaderSectionTooLarge"},
      {"header_count_at_limit", Limits(100, 100, 1000, 3, 10),
       "GET / HTTP/1.1\r\n" + host + "A: 1\r\nB: 2\r\n\r\n", "done => ok"},
      {"header_count_over_limit", Limits(100, 100, 1000, 2, 10),
       "GET / HTTP/1.1\r\n" + host + "A: 1\r\nB: 2\r\n\r\n", "=> error kTooManyHeaders"},
      {"trailers_have_their_own_budget", Limits(100, 100, 60, 2, 10),
       chunked_head + "0\r\nT1: 1\r\nT2: 2\r\n\r\n", "done => ok"},
      {"trailer_count_over_limit", Limits(100, 100, 60, 2, 10),
       chunked_head + "0\r\nT1: 1\r\nT2: 2\r\nT3: 3\r\n\r\n", "=> error kTooManyHeaders"},
      {"trailer_bytes_over_limit", Limits(100, 100, 60, 10, 10),
       chunked_head + "0\r\nT: " + std::string(60, 't') + "\r\n\r\n",
       "=> error kHeaderSectionTooLarge"},
      {"chunk_extension_within_limit", Limits(100, 100, 100, 10, 20),
       chunked_head + "1;" + std::string(19, 'e') + "\r\nx\r\n0\r\n\r\n", "done => ok"},
      {"chunk_extension_over_limit", Limits(100, 100, 100, 10, 20),
       chunked_head + "1;" + std::string(200, 'e') + "\r\nx\r\n0\r\n\r\n",
       "=> error kChunkExtensionTooLong"},
  };
  for (const LimitCase& c : cases) {
    ParseOptions options;
    options.limits = c.limits;
    ParseOutcome whole = ParseWhole(c.input, options);
    EXPECT_TRUE(absl::EndsWith(whole.log, c.expected_suffix)) << c.name << ": " << whole.log;
    for (size_t cut = 1; cut < c.input.size(); ++cut) {
      ParseOutcome split = ParseSplit(c.input, {cut}, options);
      ASSERT_EQ(split.log, whole.log) << c.name << " split at " << cut;
    }
  }
}

TEST(ParserLimitsTest, DefaultLimits) {
  ParserLimits l;
  EXPECT_EQ(l.max_header_bytes, 60u * 1024);
  EXPECT_EQ(l.max_header_count, 100u);
  std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 100; ++i) absl::StrAppend(&many, "X-", i, ": v\r\n");
  many += "\r\n";
  EXPECT_TRUE(absl::EndsWith(ParseWhole(many, {}).log, "=> error kTooManyHeaders"));
  std::string huge_uri = "GET /" + std::string(9000, 'u') + " HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_TRUE(absl::EndsWith(ParseWhole(huge_uri, {}).log, "=> error kUriTooLong"));
}

// ---- pause, abort ----

class PausingVisitor : public RecordingVisitor {
 public:
  Action OnHeader(absl::string_view name, absl::string_view value) override {
    RecordingVisitor::OnHeader(name, value);
    return Action::kPause;
  }
  Action OnBody(absl::string_view data) override {
    RecordingVisitor::OnBody(data);
    return Action::kPause;
  }
  Action OnMessageComplete() override {
    RecordingVisitor::OnMessageComplete();
    return Action::kPause;
  }
};

TEST(ParserTest, PauseAndResumeDeliverEverythingOnce) {
  std::string input =
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
      "GET / HTTP/1.1\r\nHost: b\r\n\r\n";
  PausingVisitor v;
  Parser parser(Type::kRequest, &v);
  absl::string_view rest = input;
  int pauses = 0;
  while (true) {
    size_t n = parser.Execute(rest);
    rest.remove_prefix(n);
    if (parser.status() != Parser::Status::kPaused) break;
    ++pauses;
    parser.Resume();
  }
  EXPECT_EQ(parser.status(), Parser::Status::kOk);
  EXPECT_TRUE(rest.empty());
  EXPECT_EQ(pauses, 6);  // 3 headers, 1 body, 2 completions
  EXPECT_EQ(v.Log(),
            "begin|req POST / 1.1|h Host: a|h Content-Length: 3|hc cl=3 ka=1|body abc|done|"
            "begin|req GET / 1.1|h Host: b|hc none ka=1|done");
}

TEST(ParserTest, PausedParserIgnoresExecuteUntilResumed) {
  PausingVisitor v;
  Parser parser(Type::kRequest, &v);
  std::string input = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  size_t n = parser.Execute(input);
  EXPECT_EQ(parser.status(), Parser::Status::kPaused);
  EXPECT_EQ(n, 25u);  // through the Host line
  EXPECT_EQ(parser.Execute(absl::string_view(input).substr(n)), 0u);
  parser.Resume();
  EXPECT_EQ(parser.Execute(absl::string_view(input).substr(n)), 2u);
  EXPECT_EQ(v.messages_completed(), 1);
}

class AbortingVisitor : public RecordingVisitor {
 public:
  Action OnHeadersComplete(const MessageInfo& info) override {
    RecordingVisitor::OnHeadersComplete(info);
    return Action::kAbort;
  }
};

TEST(ParserTest, AbortIsAnError) {
  AbortingVisitor v;
  Parser parser(Type::kRequest, &v);
  parser.Execute("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(parser.status(), Parser::Status::kError);
  EXPECT_EQ(parser.error(), ParserError::kCallbackAborted);
  EXPECT_EQ(v.messages_completed(), 0);
}

// ---- streaming ----

class CountingVisitor : public ParserVisitor {
 public:
  Action OnHeader(absl::string_view, absl::string_view) override { return Action::kContinue; }
  Action OnHeadersComplete(const MessageInfo&) override { return Action::kContinue; }
  Action OnBody(absl::string_view data) override {
    body_bytes += data.size();
    ++body_calls;
    return Action::kContinue;
  }
  Action OnMessageComplete() override {
    ++completed;
    return Action::kContinue;
  }
  uint64_t body_bytes = 0;
  uint64_t body_calls = 0;
  int completed = 0;
};

TEST(ParserTest, StreamsAGigabyteContentLengthBody) {
  constexpr uint64_t kSize = uint64_t{1} << 30;
  CountingVisitor v;
  Parser parser(Type::kRequest, &v);
  std::string head =
      absl::StrCat("PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: ", kSize, "\r\n\r\n");
  ASSERT_EQ(parser.Execute(head), head.size());
  std::string slice(64 * 1024, 'b');
  for (uint64_t sent = 0; sent < kSize; sent += slice.size()) {
    ASSERT_EQ(parser.Execute(slice), slice.size());
  }
  EXPECT_EQ(v.body_bytes, kSize);
  EXPECT_EQ(v.body_calls, kSize / slice.size());  // one view per read, no re-buffering
  EXPECT_EQ(v.completed, 1);
}

TEST(ParserTest, StreamsALargeChunkedBody) {
  CountingVisitor v;
  Parser parser(Type::kResponse, &v);
  std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  ASSERT_EQ(parser.Execute(head), head.size());
  // Each read carries the end of one chunk and the start of the next.
  std::string chunk = absl::StrCat("8000\r\n", std::string(0x8000, 'c'), "\r\n");
  uint64_t total = 0;
  for (int i = 0; i < 4096; ++i) {
    ASSERT_EQ(parser.Execute(chunk), chunk.size());
    total += 0x8000;
  }
  ASSERT_EQ(parser.Execute("0\r\n\r\n"), 5u);
  EXPECT_EQ(v.body_bytes, total);
  EXPECT_EQ(v.completed, 1);
}

TEST(ParserTest, ContentLengthNearUint64Max) {
  CountingVisitor v;
  Parser parser(Type::kRequest, &v);
  std::string head = "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\nabc";
  EXPECT_EQ(parser.Execute(head), head.size());
  EXPECT_EQ(parser.message_info().content_length, UINT64_MAX);
  EXPECT_EQ(v.body_bytes, 3u);
  EXPECT_EQ(parser.Finish(), ParserError::kIncompleteMessage);
}

TEST(ParserTest, ChunkSizeMaxDigits) {
  CountingVisitor v;
  Parser parser(Type::kRequest, &v);
  std::string input =
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\nab";
  EXPECT_EQ(parser.Execute(input), input.size());
  EXPECT_EQ(parser.status(), Parser::Status::kOk);
  EXPECT_EQ(v.body_bytes, 2u);
}

TEST(ParserTest, ResponseMethodContextSurvivesInterimResponses) {
  RecordingVisitor v;
  Parser parser(Type::kResponse, &v);
  parser.SetRequestMethod("HEAD");
  std::string input =
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
  EXPECT_EQ(parser.Execute(input), input.size());
  EXPECT_EQ(v.messages_completed(), 3);
  parser.SetRequestMethod("GET");
  EXPECT_EQ(parser.Execute("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"), 40u);
  EXPECT_EQ(v.body_bytes(), 2u);
}

}  // namespace
}  // namespace meshlet::http::h1
