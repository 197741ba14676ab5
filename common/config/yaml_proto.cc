#include "common/config/yaml_proto.h"

#include <algorithm>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/duration.pb.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/message.h>
#include <google/protobuf/reflection.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/status.h"
#include "common/base/utf8.h"

namespace meshlet::config {

void EmitYamlString(YAML::Emitter& out, const std::string& value) {
  const bool control = std::any_of(value.begin(), value.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
  if (control) out << YAML::DoubleQuoted;
  out << value;
}

namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// google.protobuf wrapper types: written as their plain value.
bool IsWrapper(const Descriptor* d) {
  const std::string& name = d->full_name();
  return name == "google.protobuf.UInt32Value" || name == "google.protobuf.Int32Value" ||
         name == "google.protobuf.UInt64Value" || name == "google.protobuf.Int64Value" ||
         name == "google.protobuf.BoolValue" || name == "google.protobuf.StringValue" ||
         name == "google.protobuf.DoubleValue" || name == "google.protobuf.FloatValue";
}

bool IsWellKnownScalar(const Descriptor* d) {
  return d->full_name() == "google.protobuf.Duration" || IsWrapper(d);
}

// Turns the YAML tree into field values; the first error wins and carries position and path.
class Reader {
 public:
  explicit Reader(const YamlParseOptions& options) : options_(options) {}

  absl::Status ReadMessage(const YAML::Node& node, Message& message, const std::string& path) {
    if (node.IsNull()) return absl::OkStatus();
    const Descriptor* descriptor = message.GetDescriptor();
    if (IsWellKnownScalar(descriptor)) return ReadWellKnown(node, message, path);
    if (!node.IsMap()) {
      return Error(node, path,
                   absl::StrCat("expected a mapping (fields of ", descriptor->name(), "), got ",
                                KindName(node)));
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      // Copies: yaml-cpp iterators hand out temporaries; Nodes are cheap handles.
      const YAML::Node key_node = it->first;
      const YAML::Node value = it->second;
      const std::string key = key_node.Scalar();
      const FieldDescriptor* field = FindField(descriptor, key);
      const std::string field_path = path.empty() ? key : absl::StrCat(path, ".", key);
      if (field == nullptr) {
        if (options_.ignore_unknown_fields) continue;
        return Error(key_node, field_path,
                     absl::StrCat("unknown field; known fields of ", descriptor->name(), ": ",
                                  KnownFields(descriptor)));
      }
      if (value.IsNull()) continue;
      const Reflection* reflection = message.GetReflection();
      if (field->is_map()) {
        if (!value.IsMap()) return Error(value, field_path, "expected a mapping");
        for (auto entry = value.begin(); entry != value.end(); ++entry) {
          const YAML::Node entry_key = entry->first;
          const YAML::Node entry_value = entry->second;
          Message* map_entry = reflection->AddMessage(&message, field);
          const Descriptor* entry_descriptor = map_entry->GetDescriptor();
          std::string entry_path = absl::StrCat(field_path, "[", entry_key.Scalar(), "]");
          RETURN_IF_ERROR(
              ReadSingular(entry_key, *map_entry, entry_descriptor->map_key(), entry_path));
          RETURN_IF_ERROR(
              ReadSingular(entry_value, *map_entry, entry_descriptor->map_value(), entry_path));
        }
      } else if (field->is_repeated()) {
        if (!value.IsSequence()) {
          return Error(value, field_path, absl::StrCat("expected a list, got ", KindName(value)));
        }
        for (size_t i = 0; i < value.size(); ++i) {
          RETURN_IF_ERROR(
              ReadRepeatedElement(value[i], message, field, absl::StrCat(field_path, "[", i, "]")));
        }
      } else {
        if (field->containing_oneof() != nullptr) {
          const FieldDescriptor* set =
              reflection->GetOneofFieldDescriptor(message, field->containing_oneof());
          if (set != nullptr && set != field) {
            return Error(key_node, field_path,
                         absl::StrCat("only one of ", OneofMembers(field->containing_oneof()),
                                      " may be set; ", set->name(), " is set already"));
          }
        }
        RETURN_IF_ERROR(ReadSingular(value, message, field, field_path));
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::Status ReadWellKnown(const YAML::Node& node, Message& message, const std::string& path) {
    const Descriptor* d = message.GetDescriptor();
    if (!node.IsScalar()) {
      return Error(node, path, absl::StrCat("expected a scalar, got ", KindName(node)));
    }
    if (d->full_name() == "google.protobuf.Duration") {
      absl::StatusOr<absl::Duration> duration = ParseDurationText(node.Scalar());
      if (!duration.ok()) return Error(node, path, duration.status().message());
      int64_t seconds = absl::IDivDuration(*duration, absl::Seconds(1), &*duration);
      int32_t nanos = static_cast<int32_t>(absl::ToInt64Nanoseconds(*duration));
      const Reflection* r = message.GetReflection();
      r->SetInt64(&message, d->FindFieldByName("seconds"), seconds);
      r->SetInt32(&message, d->FindFieldByName("nanos"), nanos);
      return absl::OkStatus();
    }
    // Wrappers: a single field named "value".
    return ReadSingular(node, message, d->FindFieldByName("value"), path);
  }

  absl::Status ReadRepeatedElement(const YAML::Node& node, Message& message,
                                   const FieldDescriptor* field, const std::string& path) {
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      return ReadMessage(node, *message.GetReflection()->AddMessage(&message, field), path);
    }
    return ReadScalar(node, message, field, path);
  }

  absl::Status ReadSingular(const YAML::Node& node, Message& message, const FieldDescriptor* field,
                            const std::string& path) {
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      return ReadMessage(node, *message.GetReflection()->MutableMessage(&message, field), path);
    }
    return ReadScalar(node, message, field, path);
  }

  // Sets a singular scalar field, or appends to a repeated one.
  absl::Status ReadScalar(const YAML::Node& node, Message& message, const FieldDescriptor* field,
                          const std::string& path) {
    if (!node.IsScalar()) {
      return Error(node, path, absl::StrCat("expected a scalar, got ", KindName(node)));
    }
    const Reflection* r = message.GetReflection();
    const bool add = field->is_repeated();
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING:
        // Protobuf strings are UTF-8: anything else would fail to parse at the receiving end of
        // an xDS push or an API response (bytes fields take any bytes).
        if (field->type() == FieldDescriptor::TYPE_STRING) {
          if (!IsValidUtf8(node.Scalar())) return Error(node, path, "not valid UTF-8");
          // The two noncharacters YAML does not allow at all (not even escaped): the emitter
          // would write them back as U+FFFD, so such a string could not round-trip.
          if (absl::StrContains(node.Scalar(), "\xEF\xBF\xBE") ||
              absl::StrContains(node.Scalar(), "\xEF\xBF\xBF")) {
            return Error(node, path, "holds U+FFFE or U+FFFF, which YAML does not allow");
          }
        }
        add ? r->AddString(&message, field, node.Scalar())
            : r->SetString(&message, field, node.Scalar());
        return absl::OkStatus();
      case FieldDescriptor::CPPTYPE_BOOL: {
        bool v = false;
        RETURN_IF_ERROR(ParseBool(node, path, v));
        add ? r->AddBool(&message, field, v) : r->SetBool(&message, field, v);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_ENUM: {
        const EnumValueDescriptor* v = nullptr;
        RETURN_IF_ERROR(ParseEnum(node, field, path, v));
        add ? r->AddEnum(&message, field, v) : r->SetEnum(&message, field, v);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_INT32: {
        int64_t v = 0;
        RETURN_IF_ERROR(ParseInt(node, path, std::numeric_limits<int32_t>::min(),
                                 std::numeric_limits<int32_t>::max(), v));
        add ? r->AddInt32(&message, field, static_cast<int32_t>(v))
            : r->SetInt32(&message, field, static_cast<int32_t>(v));
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_INT64: {
        int64_t v = 0;
        RETURN_IF_ERROR(ParseInt(node, path, std::numeric_limits<int64_t>::min(),
                                 std::numeric_limits<int64_t>::max(), v));
        add ? r->AddInt64(&message, field, v) : r->SetInt64(&message, field, v);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_UINT32: {
        uint64_t v = 0;
        RETURN_IF_ERROR(ParseUint(node, path, std::numeric_limits<uint32_t>::max(), v));
        add ? r->AddUInt32(&message, field, static_cast<uint32_t>(v))
            : r->SetUInt32(&message, field, static_cast<uint32_t>(v));
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_UINT64: {
        uint64_t v = 0;
        RETURN_IF_ERROR(ParseUint(node, path, std::numeric_limits<uint64_t>::max(), v));
        add ? r->AddUInt64(&message, field, v) : r->SetUInt64(&message, field, v);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_DOUBLE: {
        double v = 0;
        RETURN_IF_ERROR(ParseDouble(node, path, v));
        add ? r->AddDouble(&message, field, v) : r->SetDouble(&message, field, v);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_FLOAT: {
        double v = 0;
        RETURN_IF_ERROR(ParseDouble(node, path, v));
        add ? r->AddFloat(&message, field, static_cast<float>(v))
            : r->SetFloat(&message, field, static_cast<float>(v));
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_MESSAGE:
        break;
    }
    return Error(node, path, "unsupported field type");
  }

  absl::Status ParseBool(const YAML::Node& node, const std::string& path, bool& out) {
    const std::string lower = absl::AsciiStrToLower(node.Scalar());
    if (lower == "true") {
      out = true;
    } else if (lower == "false") {
      out = false;
    } else {
      return Error(node, path, absl::StrCat("expected true or false, got \"", node.Scalar(), "\""));
    }
    return absl::OkStatus();
  }

  absl::Status ParseInt(const YAML::Node& node, const std::string& path, int64_t min, int64_t max,
                        int64_t& out) {
    if (!absl::SimpleAtoi(node.Scalar(), &out) || out < min || out > max) {
      return Error(node, path,
                   absl::StrCat("expected an integer in [", min, ", ", max, "], got \"",
                                node.Scalar(), "\""));
    }
    return absl::OkStatus();
  }

  absl::Status ParseUint(const YAML::Node& node, const std::string& path, uint64_t max,
                         uint64_t& out) {
    const std::string& text = node.Scalar();
    if (absl::StartsWith(text, "-") || !absl::SimpleAtoi(text, &out) || out > max) {
      return Error(node, path,
                   absl::StrCat("expected an integer in [0, ", max, "], got \"", text, "\""));
    }
    return absl::OkStatus();
  }

  absl::Status ParseDouble(const YAML::Node& node, const std::string& path, double& out) {
    if (!absl::SimpleAtod(node.Scalar(), &out) || !std::isfinite(out)) {
      return Error(node, path, absl::StrCat("expected a number, got \"", node.Scalar(), "\""));
    }
    return absl::OkStatus();
  }

  absl::Status ParseEnum(const YAML::Node& node, const FieldDescriptor* field,
                         const std::string& path, const EnumValueDescriptor*& out) {
    const std::string& text = node.Scalar();
    out = field->enum_type()->FindValueByName(text);
    if (out == nullptr) out = field->enum_type()->FindValueByName(absl::AsciiStrToUpper(text));
    if (out != nullptr) return absl::OkStatus();
    std::vector<std::string> names;
    for (int i = 0; i < field->enum_type()->value_count(); ++i) {
      names.push_back(field->enum_type()->value(i)->name());
    }
    return Error(
        node, path,
        absl::StrCat("unknown value \"", text, "\"; expected one of ", absl::StrJoin(names, ", ")));
  }

  static const FieldDescriptor* FindField(const Descriptor* d, const std::string& key) {
    const FieldDescriptor* f = d->FindFieldByName(key);
    if (f == nullptr) f = d->FindFieldByCamelcaseName(key);
    return f;
  }

  // As policy documents and validation errors spell them (camelCase; snake_case is accepted too).
  static std::string KnownFields(const Descriptor* d) {
    std::vector<std::string> names;
    for (int i = 0; i < d->field_count(); ++i) names.push_back(d->field(i)->json_name());
    return absl::StrJoin(names, ", ");
  }

  static std::string OneofMembers(const google::protobuf::OneofDescriptor* oneof) {
    std::vector<std::string> names;
    for (int i = 0; i < oneof->field_count(); ++i) names.push_back(oneof->field(i)->name());
    return absl::StrJoin(names, ", ");
  }

  static const char* KindName(const YAML::Node& node) {
    switch (node.Type()) {
      case YAML::NodeType::Map:
        return "a mapping";
      case YAML::NodeType::Sequence:
        return "a list";
      case YAML::NodeType::Scalar:
        return "a scalar";
      default:
        return "nothing";
    }
  }

  absl::Status Error(const YAML::Node& node, const std::string& path,
                     absl::string_view message) const {
    YAML::Mark mark = node.Mark();
    return ErrorAt(options_, mark.is_null() ? 0 : mark.line + 1, mark.column + 1,
                   path.empty() ? "(document)" : path, message);
  }

  const YamlParseOptions& options_;
};

void EmitMessage(YAML::Emitter& out, const Message& message);

void EmitScalar(YAML::Emitter& out, const Message& message, const FieldDescriptor* field,
                int index) {
  const Reflection* r = message.GetReflection();
  const bool repeated = index >= 0;
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      EmitYamlString(out, repeated ? r->GetRepeatedString(message, field, index)
                                   : r->GetString(message, field));
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      out << (repeated ? r->GetRepeatedBool(message, field, index) : r->GetBool(message, field));
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      out << (repeated ? r->GetRepeatedEnum(message, field, index) : r->GetEnum(message, field))
                 ->name();
      break;
    case FieldDescriptor::CPPTYPE_INT32:
      out << (repeated ? r->GetRepeatedInt32(message, field, index) : r->GetInt32(message, field));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      out << (repeated ? r->GetRepeatedInt64(message, field, index) : r->GetInt64(message, field));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      out << (repeated ? r->GetRepeatedUInt32(message, field, index)
                       : r->GetUInt32(message, field));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      out << (repeated ? r->GetRepeatedUInt64(message, field, index)
                       : r->GetUInt64(message, field));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      out << (repeated ? r->GetRepeatedDouble(message, field, index)
                       : r->GetDouble(message, field));
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      out << (repeated ? r->GetRepeatedFloat(message, field, index) : r->GetFloat(message, field));
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      EmitMessage(out, repeated ? r->GetRepeatedMessage(message, field, index)
                                : r->GetMessage(message, field));
      break;
  }
}

void EmitMessage(YAML::Emitter& out, const Message& message) {
  const Descriptor* d = message.GetDescriptor();
  const Reflection* r = message.GetReflection();
  if (d->full_name() == "google.protobuf.Duration") {
    int64_t seconds = r->GetInt64(message, d->FindFieldByName("seconds"));
    int32_t nanos = r->GetInt32(message, d->FindFieldByName("nanos"));
    out << absl::FormatDuration(absl::Seconds(seconds) + absl::Nanoseconds(nanos));
    return;
  }
  if (IsWrapper(d)) {
    EmitScalar(out, message, d->FindFieldByName("value"), -1);
    return;
  }
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(message, &fields);
  out << YAML::BeginMap;
  for (const FieldDescriptor* field : fields) {
    out << YAML::Key << field->name() << YAML::Value;
    if (field->is_map()) {
      out << YAML::BeginMap;
      for (int i = 0; i < r->FieldSize(message, field); ++i) {
        const Message& entry = r->GetRepeatedMessage(message, field, i);
        const Descriptor* ed = entry.GetDescriptor();
        out << YAML::Key;
        EmitScalar(out, entry, ed->map_key(), -1);
        out << YAML::Value;
        EmitScalar(out, entry, ed->map_value(), -1);
      }
      out << YAML::EndMap;
    } else if (field->is_repeated()) {
      out << YAML::BeginSeq;
      for (int i = 0; i < r->FieldSize(message, field); ++i) EmitScalar(out, message, field, i);
      out << YAML::EndSeq;
    } else {
      EmitScalar(out, message, field, -1);
    }
  }
  out << YAML::EndMap;
}

}  // namespace

absl::StatusOr<absl::Duration> ParseDurationText(absl::string_view text) {
  std::string trimmed(absl::StripAsciiWhitespace(text));
  absl::Duration d;
  if (trimmed == "0") return absl::ZeroDuration();
  if (!absl::ParseDuration(trimmed, &d) || d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a duration such as 250ms, 1.5s or 2m, got \"", text, "\""));
  }
  if (d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("duration must not be negative, got \"", text, "\""));
  }
  return d;
}

absl::Status ErrorAt(const YamlParseOptions& options, int line, int column, absl::string_view path,
                     absl::string_view reason) {
  std::string where = options.source_name;
  if (line > 0) {
    absl::StrAppend(&where, where.empty() ? "" : ":", line + options.line_offset, ":", column);
  }
  return absl::InvalidArgumentError(
      absl::StrCat(where, where.empty() ? "" : ": ", path, ": ", reason));
}

absl::Status YamlToProto(absl::string_view yaml, Message& message,
                         const YamlParseOptions& options) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    std::string where = options.source_name;
    absl::StrAppend(&where, where.empty() ? "" : ":", e.mark.line + 1 + options.line_offset, ":",
                    e.mark.column + 1);
    return absl::InvalidArgumentError(absl::StrCat(where, ": invalid YAML: ", e.msg));
  }
  Reader reader(options);
  return reader.ReadMessage(root, message, "");
}

absl::StatusOr<std::vector<YamlDocument>> SplitYamlDocuments(absl::string_view yaml,
                                                             absl::string_view source_name) {
  std::vector<YamlDocument> documents;
  std::string current;
  int current_first_line = 1;
  int line_number = 0;
  auto flush = [&]() -> absl::Status {
    bool has_content = false;
    for (absl::string_view line : absl::StrSplit(current, '\n')) {
      absl::string_view t = absl::StripLeadingAsciiWhitespace(line);
      if (!t.empty() && t[0] != '#') {
        has_content = true;
        break;
      }
    }
    if (has_content) {
      YamlDocument doc;
      doc.index = static_cast<int>(documents.size());
      doc.first_line = current_first_line;
      doc.yaml = current;
      try {
        YAML::Node node = YAML::Load(current);
        if (node.IsMap() && node["kind"] && node["kind"].IsScalar()) {
          const YAML::Node kind = node["kind"];
          doc.kind = kind.Scalar();
          doc.kind_line = kind.Mark().line + current_first_line;
          doc.kind_column = kind.Mark().column + 1;
        }
        if (node.IsMap() && node["apiVersion"] && node["apiVersion"].IsScalar()) {
          const YAML::Node api_version = node["apiVersion"];
          doc.api_version = api_version.Scalar();
          doc.api_version_line = api_version.Mark().line + current_first_line;
          doc.api_version_column = api_version.Mark().column + 1;
        }
      } catch (const YAML::Exception& e) {
        std::string where(source_name);
        absl::StrAppend(&where, where.empty() ? "" : ":", e.mark.line + current_first_line, ":",
                        e.mark.column + 1);
        return absl::InvalidArgumentError(absl::StrCat(where, ": invalid YAML: ", e.msg));
      }
      documents.push_back(std::move(doc));
    }
    current.clear();
    return absl::OkStatus();
  };
  for (absl::string_view line : absl::StrSplit(yaml, '\n')) {
    ++line_number;
    bool separator = absl::StartsWith(line, "---") &&
                     (line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r');
    if (separator) {
      absl::Status s = flush();
      if (!s.ok()) return s;
      current_first_line = line_number + 1;
      continue;
    }
    absl::StrAppend(&current, line, "\n");
  }
  absl::Status s = flush();
  if (!s.ok()) return s;
  return documents;
}

std::string ProtoToYaml(const Message& message) {
  YAML::Emitter out;
  EmitMessage(out, message);
  return std::string(out.c_str()) + "\n";
}

std::string DeterministicBytes(const google::protobuf::Message& message) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return bytes;
}

}  // namespace meshlet::config
