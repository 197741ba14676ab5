#include "control-plane/identity/caller.h"

#include "gtest/gtest.h"

namespace meshlet::controlplane::identity {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1900000000);

net::PeerInfo TlsPeer(std::vector<std::string> uri_sans) {
  net::PeerInfo peer;
  peer.tls = true;
  peer.peer_certificate_presented = true;
  peer.uri_sans = std::move(uri_sans);
  peer.peer_not_after = absl::FromUnixSeconds(2000000000);
  peer.peer_attestation = "join-token:00000000000000ab";
  return peer;
}

TEST(AuthenticateCallerTest, WorkloadCertificate) {
  absl::StatusOr<Caller> caller = AuthenticateCaller(
      TlsPeer({"spiffe://cluster.local/ns/shop/sa/cart"}), "cluster.local", kNow);
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->identity, (WorkloadIdentity{"shop", "cart"}));
  EXPECT_EQ(caller->spiffe_id, "spiffe://cluster.local/ns/shop/sa/cart");
  EXPECT_EQ(caller->not_after, absl::FromUnixSeconds(2000000000));
  EXPECT_EQ(caller->attestation, "join-token:00000000000000ab");
}

TEST(AuthenticateCallerTest, RefusesWithoutCertificate) {
  net::PeerInfo plaintext;
  absl::StatusOr<Caller> caller = AuthenticateCaller(plaintext, "cluster.local", kNow);
  EXPECT_TRUE(absl::IsUnauthenticated(caller.status())) << caller.status();
  EXPECT_STREQ(CallerRefusalReason(caller.status()), "no_certificate");

  net::PeerInfo tls_only;
  tls_only.tls = true;
  caller = AuthenticateCaller(tls_only, "cluster.local", kNow);
  EXPECT_TRUE(absl::IsUnauthenticated(caller.status())) << caller.status();
  EXPECT_NE(caller.status().message().find("no client certificate"), std::string::npos);
}

TEST(AuthenticateCallerTest, RefusesACertificateThatExpiredSinceTheHandshake) {
  const net::PeerInfo peer = TlsPeer({"spiffe://cluster.local/ns/shop/sa/cart"});
  EXPECT_TRUE(
      AuthenticateCaller(peer, "cluster.local", peer.peer_not_after - absl::Seconds(1)).ok());
  absl::StatusOr<Caller> caller = AuthenticateCaller(peer, "cluster.local", peer.peer_not_after);
  EXPECT_TRUE(absl::IsUnauthenticated(caller.status())) << caller.status();
  EXPECT_NE(caller.status().message().find("expired"), std::string::npos);
  EXPECT_STREQ(CallerRefusalReason(caller.status()), "certificate_expired");
}

TEST(AuthenticateCallerTest, RefusesCertificatesNamingNoWorkload) {
  for (const std::vector<std::string>& sans : std::vector<std::vector<std::string>>{
           {"spiffe://other.domain/ns/shop/sa/cart"},  // another trust domain
           {"spiffe://cluster.local/cart"},            // not /ns/<ns>/sa/<sa>
           {},                                         // no URI SAN at all
           {"spiffe://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/c/sa/d"},
           {"https://cluster.local/ns/shop/sa/cart"}}) {
    absl::StatusOr<Caller> caller = AuthenticateCaller(TlsPeer(sans), "cluster.local", kNow);
    EXPECT_TRUE(absl::IsPermissionDenied(caller.status())) << caller.status();
    EXPECT_STREQ(CallerRefusalReason(caller.status()), "not_a_workload");
  }
}

TEST(AttestationTest, RoundTrips) {
  const Attestation token{.kind = Attestation::Kind::kJoinToken,
                          .join_token_id = "0123456789abcdef"};
  EXPECT_EQ(FormatAttestation(token), "join-token:0123456789abcdef");
  EXPECT_EQ(ParseAttestation("join-token:0123456789abcdef"), token);

  const Attestation pod{.kind = Attestation::Kind::kKubernetesPod,
                        .pod_namespace = "shop",
                        .pod_name = "cart-7d4f9-x2x4q",
                        .pod_uid = "0f9c2a6e-5b1d-4c1e-9a51-0e6f7b1c2d3e"};
  EXPECT_EQ(FormatAttestation(pod),
            "kubernetes:shop/cart-7d4f9-x2x4q/0f9c2a6e-5b1d-4c1e-9a51-0e6f7b1c2d3e");
  EXPECT_EQ(ParseAttestation(FormatAttestation(pod)), pod);
}

TEST(AttestationTest, RefusesMalformed) {
  for (const char* text : {"", "join-token:", "join-token:ABC", "join-token:a/b", "kubernetes:a/b",
                           "kubernetes:a/b/c/d", "kubernetes:a//c", "other:x", "join-token:a b"}) {
    EXPECT_EQ(ParseAttestation(text), std::nullopt) << text;
  }
}

}  // namespace
}  // namespace meshlet::controlplane::identity
