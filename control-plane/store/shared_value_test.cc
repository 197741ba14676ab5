#include "control-plane/store/shared_value.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control-plane/store/file_store.h"
#include "control-plane/store/forwarding_store.h"

namespace meshlet::controlplane {
namespace {

StoreKeys NewKeys(const std::string& text = StoreKeys::GenerateKeyText()) {
  absl::StatusOr<StoreKeys> keys = StoreKeys::Parse(text, "test keys");
  EXPECT_TRUE(keys.ok()) << keys.status();
  return *std::move(keys);
}

class SharedValueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp") +
           "/shared_value_test";
    std::filesystem::remove_all(dir_);
    auto store = FileStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The record's value as the store holds it.
  std::string Raw(absl::string_view name) {
    absl::StatusOr<StoredResource> stored = store_->Get({kSharedValueKind, "", std::string(name)});
    EXPECT_TRUE(stored.ok()) << stored.status();
    return stored.ok() ? stored->body : "";
  }

  static std::function<absl::StatusOr<std::string>()> Make(std::string value) {
    return [value] { return absl::StatusOr<std::string>(value); };
  }

  std::string dir_;
  std::unique_ptr<FileStore> store_;
  const std::string key_text_ = StoreKeys::GenerateKeyText();
  const StoreKeys keys_ = NewKeys(key_text_);
};

TEST_F(SharedValueTest, TheFirstValueWinsAndEveryoneGetsIt) {
  int created = 0;
  auto make = [&](std::string v) {
    return [&created, v]() -> absl::StatusOr<std::string> {
      ++created;
      return v;
    };
  };
  EXPECT_EQ(*LoadOrCreateSharedValue(*store_, keys_, "api-token", make("first")), "first");
  EXPECT_EQ(*LoadOrCreateSharedValue(*store_, keys_, "api-token", make("second")), "first");
  EXPECT_EQ(created, 1);  // the second replica found it and created nothing
  // Another name is another value.
  EXPECT_EQ(*LoadOrCreateSharedValue(*store_, keys_, "ca-root", make("root")), "root");
  // A replica that lost the race (created, then found it taken) returns the winner's.
  ASSERT_TRUE(store_->Delete({kSharedValueKind, "", "ca-root"}, kAnyRevision).ok());
  auto racing = [&]() -> absl::StatusOr<std::string> {
    // The other replica stores its value while this one is creating.
    EXPECT_TRUE(store_
                    ->Put({kSharedValueKind, "", "ca-root"}, *keys_.Seal("ca-root", "winner"),
                          kMustNotExist)
                    .ok());
    return std::string("loser");
  };
  EXPECT_EQ(*LoadOrCreateSharedValue(*store_, keys_, "ca-root", racing), "winner");
}

TEST_F(SharedValueTest, ACreationErrorIsReturnedAndNothingStored) {
  absl::StatusOr<std::string> failed = LoadOrCreateSharedValue(
      *store_, keys_, "ca-root", [] { return absl::InternalError("no entropy"); });
  EXPECT_EQ(failed.status().message(), "no entropy");
  EXPECT_TRUE(absl::IsNotFound(store_->Get({kSharedValueKind, "", "ca-root"}).status()));
}

TEST_F(SharedValueTest, TheStoreHoldsOnlyCiphertext) {
  const std::string secret = "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n";
  ASSERT_EQ(*LoadOrCreateSharedValue(*store_, keys_, "ca-root", Make(secret)), secret);
  const std::string raw = Raw("ca-root");
  EXPECT_TRUE(
      absl::StartsWith(raw, absl::StrCat("meshlet-sealed:v1:", keys_.current_key_id(), ":")))
      << raw;
  EXPECT_FALSE(absl::StrContains(raw, "PRIVATE KEY")) << raw;
  EXPECT_FALSE(absl::StrContains(raw, "secret")) << raw;
  // Another replica with the same key file reads it.
  EXPECT_EQ(*LoadOrCreateSharedValue(*store_, NewKeys(key_text_), "ca-root", Make("other")),
            secret);
}

TEST_F(SharedValueTest, AReplicaWithAnotherKeySaysWhichKeyItLacks) {
  ASSERT_TRUE(LoadOrCreateSharedValue(*store_, keys_, "ca-root", Make("root")).ok());
  const StoreKeys other = NewKeys();
  absl::StatusOr<std::string> refused =
      LoadOrCreateSharedValue(*store_, other, "ca-root", Make("root 2"));
  ASSERT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find(
                absl::StrCat("ControlPlaneSecret/ca-root in the store: encrypted with key ",
                             keys_.current_key_id(), ", which this replica does not have")),
            std::string::npos)
      << refused.status();
  EXPECT_NE(refused.status().message().find("--store-encryption-key-file"), std::string::npos);
  // Nothing was overwritten.
  EXPECT_EQ(StoreKeys::KeyIdOf(Raw("ca-root")), keys_.current_key_id());
}

TEST_F(SharedValueTest, AChangedCiphertextIsRefused) {
  ASSERT_TRUE(LoadOrCreateSharedValue(*store_, keys_, "api-token", Make("token")).ok());
  std::string raw = Raw("api-token");
  // One byte of the base64 body changed (the header stays valid).
  raw[raw.size() - 5] = raw[raw.size() - 5] == 'A' ? 'B' : 'A';
  ASSERT_TRUE(store_->Put({kSharedValueKind, "", "api-token"}, raw, kAnyRevision).ok());
  absl::StatusOr<std::string> refused =
      LoadOrCreateSharedValue(*store_, keys_, "api-token", Make("new"));
  ASSERT_TRUE(absl::IsDataLoss(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("does not authenticate"), std::string::npos);
  // A valid envelope of another record, copied over this one: refused too.
  ASSERT_TRUE(LoadOrCreateSharedValue(*store_, keys_, "ca-root", Make("root")).ok());
  ASSERT_TRUE(store_->Put({kSharedValueKind, "", "api-token"}, Raw("ca-root"), kAnyRevision).ok());
  EXPECT_TRUE(
      absl::IsDataLoss(LoadOrCreateSharedValue(*store_, keys_, "api-token", Make("new")).status()));
}

TEST_F(SharedValueTest, APlaintextValueIsEncryptedInPlace) {
  // As an older version stored it.
  ASSERT_TRUE(store_->Put({kSharedValueKind, "", "api-token"}, "0123abcd", kMustNotExist).ok());
  EXPECT_EQ(*LoadOrCreateSharedValue(*store_, keys_, "api-token", Make("new")), "0123abcd");
  const std::string raw = Raw("api-token");
  EXPECT_EQ(StoreKeys::KeyIdOf(raw), keys_.current_key_id()) << raw;
  EXPECT_FALSE(absl::StrContains(raw, "0123abcd"));
  EXPECT_EQ(*keys_.Open("api-token", raw), "0123abcd");
}

TEST_F(SharedValueTest, AValueUnderAnOlderKeyIsSealedAgainWithTheCurrentOne) {
  ASSERT_TRUE(LoadOrCreateSharedValue(*store_, keys_, "ca-root", Make("root")).ok());
  // The key file gains a new first key; the old one stays after it.
  const StoreKeys rotated = NewKeys(absl::StrCat(StoreKeys::GenerateKeyText(), "\n", key_text_));
  ASSERT_NE(rotated.current_key_id(), keys_.current_key_id());
  EXPECT_EQ(*LoadOrCreateSharedValue(*store_, rotated, "ca-root", Make("other")), "root");
  EXPECT_EQ(StoreKeys::KeyIdOf(Raw("ca-root")), rotated.current_key_id());
  // The old key alone no longer opens it.
  EXPECT_TRUE(absl::IsFailedPrecondition(
      LoadOrCreateSharedValue(*store_, keys_, "ca-root", Make("other")).status()));
}

TEST_F(SharedValueTest, ResealSealsEveryRecordUnderAnOlderKeyOnceAndSaysWhichKeySealsEach) {
  ASSERT_TRUE(LoadOrCreateSharedValue(*store_, keys_, "api-token", Make("token")).ok());
  ASSERT_TRUE(LoadOrCreateSharedValue(*store_, keys_, "ca-root", Make("root")).ok());
  ASSERT_TRUE(store_->Put({kSharedValueKind, "", "legacy"}, "plain", kMustNotExist).ok());
  // A record sealed with a key no replica here has: left as it is, and reported.
  const StoreKeys stranger = NewKeys();
  ASSERT_TRUE(LoadOrCreateSharedValue(*store_, stranger, "foreign", Make("x")).ok());
  // An unrelated kind is not touched.
  ASSERT_TRUE(store_->Put({"Service", "default", "web"}, "{}", kMustNotExist).ok());

  int resealed = 0;
  absl::StatusOr<std::vector<SealedRecord>> before = ResealSharedValues(*store_, keys_, &resealed);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(resealed, 1);  // the plaintext one
  const std::string old_id = keys_.current_key_id();
  EXPECT_EQ(*before, (std::vector<SealedRecord>{{"api-token", old_id},
                                                {"ca-root", old_id},
                                                {"foreign", stranger.current_key_id()},
                                                {"legacy", old_id}}));

  const StoreKeys rotated = NewKeys(*StoreKeys::WithNewFirstKey(key_text_, "key file"));
  const std::string new_id = rotated.current_key_id();
  resealed = 0;
  absl::StatusOr<std::vector<SealedRecord>> after = ResealSharedValues(*store_, rotated, &resealed);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(resealed, 3);
  EXPECT_EQ(*after, (std::vector<SealedRecord>{{"api-token", new_id},
                                               {"ca-root", new_id},
                                               {"foreign", stranger.current_key_id()},
                                               {"legacy", new_id}}));
  EXPECT_EQ(StoreKeys::KeyIdOf(Raw("api-token")), new_id);
  EXPECT_EQ(*rotated.Open("ca-root", Raw("ca-root")), "root");
  // Another replica with the same keys, after: nothing left to write.
  resealed = 0;
  ASSERT_TRUE(ResealSharedValues(*store_, rotated, &resealed).ok());
  EXPECT_EQ(resealed, 0);
  // The new key alone (the rotation finished) opens them all.
  const StoreKeys finished =
      NewKeys(*StoreKeys::WithFirstKeyOnly(*StoreKeys::WithNewFirstKey(key_text_, "k"), "k"));
  EXPECT_EQ(finished.size(), 1u);
}

TEST_F(SharedValueTest, ResealWritesOnceWhenReplicasRace) {
  ASSERT_TRUE(LoadOrCreateSharedValue(*store_, keys_, "api-token", Make("token")).ok());
  const StoreKeys rotated = NewKeys(absl::StrCat(StoreKeys::GenerateKeyText(), "\n", key_text_));
  // A store that lets another replica re-seal the record between this one's read and write.
  class RacingStore final : public ForwardingStore {
   public:
    RacingStore(Store& inner, const StoreKeys& keys) : ForwardingStore(inner), keys_(keys) {}
    absl::StatusOr<StoredResource> Get(const ResourceKey& key) const override {
      absl::StatusOr<StoredResource> got = inner().Get(key);
      if (!raced_ && got.ok()) {
        raced_ = true;
        EXPECT_TRUE(ResealSharedValues(inner(), keys_).ok());
      }
      return got;
    }

   private:
    const StoreKeys& keys_;
    mutable bool raced_ = false;
  };
  RacingStore racing(*store_, rotated);
  const int64_t revision = store_->Revision();
  int resealed = 0;
  absl::StatusOr<std::vector<SealedRecord>> records =
      ResealSharedValues(racing, rotated, &resealed);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(resealed, 0);  // the other replica's write landed; this one's was refused
  EXPECT_EQ(store_->Revision(), revision + 1);
  EXPECT_EQ(*records, (std::vector<SealedRecord>{{"api-token", rotated.current_key_id()}}));
  EXPECT_EQ(*rotated.Open("api-token", Raw("api-token")), "token");
}

TEST(StoreKeysTest, RotationTextsKeepTheOtherLinesAndRefuseABadFile) {
  const std::string a = StoreKeys::GenerateKeyText();
  const std::string b = StoreKeys::GenerateKeyText();
  const std::string file = absl::StrCat("# the mesh's store key\n", a, "\n");
  absl::StatusOr<std::string> rotated = StoreKeys::WithNewFirstKey(file, "key file");
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_TRUE(absl::EndsWith(*rotated, absl::StrCat("\n", file))) << *rotated;
  const StoreKeys both = NewKeys(*rotated);
  EXPECT_EQ(both.size(), 2u);
  EXPECT_EQ(both.key_ids()[1], NewKeys(a).current_key_id());
  // Without a final newline the new text still has one line per key.
  EXPECT_EQ(NewKeys(*StoreKeys::WithNewFirstKey(a, "k")).size(), 2u);

  absl::StatusOr<std::string> finished =
      StoreKeys::WithFirstKeyOnly(absl::StrCat(b, "\n# the mesh's store key\n", a, "\n"), "k");
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_EQ(*finished, absl::StrCat(b, "\n# the mesh's store key\n"));
  EXPECT_EQ(NewKeys(*finished).current_key_id(), NewKeys(b).current_key_id());

  // A malformed line: an error naming the file and line, no text to write.
  for (auto* edit : {&StoreKeys::WithNewFirstKey, &StoreKeys::WithFirstKeyOnly}) {
    absl::StatusOr<std::string> bad = (*edit)(absl::StrCat(a, "\nAAAA\n"), "store-key");
    EXPECT_TRUE(absl::IsInvalidArgument(bad.status()));
    EXPECT_TRUE(absl::StartsWith(bad.status().message(), "store-key: line 2: not a key"))
        << bad.status();
  }
}

TEST(StoreKeysTest, EnvelopeRoundTripAndKeyFileForms) {
  const std::string text = StoreKeys::GenerateKeyText();
  absl::StatusOr<StoreKeys> keys =
      StoreKeys::Parse(absl::StrCat("# the mesh's store key\n\n  ", text, "  \n"), "key file");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->size(), 1u);
  EXPECT_EQ(keys->current_key_id().size(), 16u);
  for (const std::string& plaintext : {std::string(), std::string("x"), std::string(5000, '\0')}) {
    absl::StatusOr<std::string> sealed = keys->Seal("name", plaintext);
    ASSERT_TRUE(sealed.ok()) << sealed.status();
    EXPECT_TRUE(StoreKeys::IsSealed(*sealed));
    EXPECT_EQ(*keys->Open("name", *sealed), plaintext);
    // Sealing twice gives two ciphertexts (a fresh nonce each time).
    EXPECT_NE(*keys->Seal("name", plaintext), *sealed);
  }
  // The same key in another file has the same id; another key another.
  EXPECT_EQ(StoreKeys::Parse(text, "again")->current_key_id(), keys->current_key_id());
  EXPECT_NE(NewKeys().current_key_id(), keys->current_key_id());
}

TEST(StoreKeysTest, BadKeyFilesAndEnvelopesSayWhatIsWrong) {
  auto error = [](absl::string_view text) {
    return std::string(StoreKeys::Parse(text, "keys.txt").status().message());
  };
  EXPECT_EQ(error(""), "keys.txt: holds no key");
  EXPECT_EQ(error("# only a comment\n"), "keys.txt: holds no key");
  EXPECT_NE(error("not base64!").find("keys.txt: line 1: not a key"), std::string::npos);
  EXPECT_NE(error("\nc2hvcnQ=\n").find("keys.txt: line 2: not a key"), std::string::npos);
  const std::string key = StoreKeys::GenerateKeyText();
  EXPECT_NE(error(absl::StrCat(key, "\n", key)).find("line 2: the same key"), std::string::npos);
  absl::StatusOr<StoreKeys> missing = StoreKeys::FromFile("/nonexistent/store-key");
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  EXPECT_NE(missing.status().message().find("/nonexistent/store-key"), std::string::npos);

  const StoreKeys keys = NewKeys();
  EXPECT_TRUE(absl::IsInvalidArgument(keys.Open("n", "plain").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(keys.Open("n", "meshlet-sealed:v9:ab:cd").status()));
  const std::string header = absl::StrCat("meshlet-sealed:v1:", keys.current_key_id(), ":");
  EXPECT_TRUE(absl::IsDataLoss(keys.Open("n", absl::StrCat(header, "!!")).status()));
  EXPECT_TRUE(absl::IsDataLoss(keys.Open("n", absl::StrCat(header, "AAAA")).status()));
  // Relabelled with another key id: not a key of this replica.
  std::string sealed = *keys.Seal("n", "v");
  sealed.replace(header.size() - 17, 16, "0123456789abcdef");
  EXPECT_TRUE(absl::IsFailedPrecondition(keys.Open("n", sealed).status()));
}

}  // namespace
}  // namespace meshlet::controlplane
