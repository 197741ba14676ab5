#include "common/stats/exposition.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/stats/names.h"

namespace meshlet {
namespace {

struct NamedPercentile {
  absl::string_view name;
  double q;
};
constexpr NamedPercentile kPercentiles[] = {
    {"p50", 0.5}, {"p90", 0.9}, {"p95", 0.95}, {"p99", 0.99}, {"p999", 0.999}};

void AppendUint(std::string* out, uint64_t value) {
  char buffer[absl::numbers_internal::kFastToBufferSize];
  out->append(buffer, absl::numbers_internal::FastIntToBuffer(value, buffer));
}

void AppendInt(std::string* out, int64_t value) {
  char buffer[absl::numbers_internal::kFastToBufferSize];
  out->append(buffer, absl::numbers_internal::FastIntToBuffer(value, buffer));
}

// Shortest text that parses back to the same double, laid out like Go's strconv 'g' format
// (what Prometheus' own clients emit): exponent form only below 1e-4 or from 1e6 up, so that
// `le` label values read "0.0001", "0.25", "60", "1e-06". Prometheus spellings for non-finite.
void AppendDouble(std::string* out, double value, absl::string_view nan = "NaN") {
  if (std::isnan(value)) {
    out->append(nan.data(), nan.size());
    return;
  }
  if (std::isinf(value)) {
    out->append(value > 0 ? "+Inf" : "-Inf");
    return;
  }
  char buffer[64];
  std::to_chars_result result =
      std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  CHECK(result.ec == std::errc());
  const char* e = std::find(buffer, result.ptr, 'e');
  int exponent = 0;
  CHECK(std::from_chars(e + (e[1] == '+' ? 2 : 1), result.ptr, exponent).ec == std::errc());
  if (exponent >= -4 && exponent < 6) {
    result = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::fixed);
    CHECK(result.ec == std::errc());
  }
  out->append(buffer, result.ptr);
}

// A recorded quantity in exposed units. Integers stay exact when nothing is divided.
void AppendScaled(std::string* out, uint64_t value, double divisor) {
  if (divisor == 1) {
    AppendUint(out, value);
  } else {
    AppendDouble(out, static_cast<double>(value) / divisor);
  }
}

void AppendSeriesName(std::string* out, absl::string_view name, absl::string_view suffix,
                      absl::string_view labels, absl::string_view extra_label = "") {
  absl::StrAppend(out, name, suffix);
  if (labels.empty() && extra_label.empty()) return;
  out->push_back('{');
  out->append(labels.data(), labels.size());
  if (!labels.empty() && !extra_label.empty()) out->push_back(',');
  out->append(extra_label.data(), extra_label.size());
  out->push_back('}');
}

}  // namespace

void AppendPrometheusValue(std::string& out, double value) { AppendDouble(&out, value); }

std::string FormatPrometheus(const StatsSnapshot& snapshot) {
  std::string out;
  out.reserve(snapshot.series.size() * 96);
  absl::string_view family;
  // `le="<bound>"` for the current histogram family, built once per family.
  std::vector<std::string> le_labels;
  // The series' labels in Prometheus syntax, rebuilt for each series (the registry keeps only the
  // values).
  std::string labels;
  for (const SeriesSnapshot& s : snapshot.series) {
    labels.clear();
    AppendPrometheusLabels(&labels, s.labels);
    if (s.name != family) {
      family = s.name;
      absl::StrAppend(&out, "# HELP ", s.name, " ");
      stats_internal::AppendEscapedHelp(&out, s.help);
      absl::StrAppend(&out, "\n# TYPE ", s.name, " ", MetricTypeName(s.type), "\n");
      if (s.type == MetricType::kHistogram) {
        le_labels.clear();
        for (uint64_t bound : s.layout->bounds()) {
          std::string& le = le_labels.emplace_back("le=\"");
          AppendScaled(&le, bound, s.layout->divisor());
          le.push_back('"');
        }
        le_labels.push_back("le=\"+Inf\"");
      }
    }
    switch (s.type) {
      case MetricType::kCounter:
        AppendSeriesName(&out, s.name, "", labels);
        out.push_back(' ');
        AppendUint(&out, s.counter);
        out.push_back('\n');
        break;
      case MetricType::kGauge:
        AppendSeriesName(&out, s.name, "", labels);
        out.push_back(' ');
        AppendInt(&out, s.gauge);
        out.push_back('\n');
        break;
      case MetricType::kHistogram: {
        const std::vector<uint64_t>& cumulative = s.histogram.cumulative_counts();
        for (size_t j = 0; j < le_labels.size(); ++j) {
          AppendSeriesName(&out, s.name, "_bucket", labels, le_labels[j]);
          out.push_back(' ');
          AppendUint(&out, j < cumulative.size() ? cumulative[j] : s.histogram.count());
          out.push_back('\n');
        }
        AppendSeriesName(&out, s.name, "_sum", labels);
        out.push_back(' ');
        AppendScaled(&out, s.histogram.sum(), s.layout->divisor());
        out.push_back('\n');
        AppendSeriesName(&out, s.name, "_count", labels);
        out.push_back(' ');
        AppendUint(&out, s.histogram.count());
        out.push_back('\n');
        break;
      }
    }
  }
  return out;
}

std::string FormatText(const StatsSnapshot& snapshot, absl::string_view name_filter) {
  std::string out;
  out.reserve(snapshot.series.size() * 64);
  std::string labels;
  for (const SeriesSnapshot& s : snapshot.series) {
    if (!absl::StrContains(s.name, name_filter)) continue;
    labels.clear();
    AppendPrometheusLabels(&labels, s.labels);
    AppendSeriesName(&out, s.name, "", labels);
    out.append(": ");
    switch (s.type) {
      case MetricType::kCounter:
        AppendUint(&out, s.counter);
        break;
      case MetricType::kGauge:
        AppendInt(&out, s.gauge);
        break;
      case MetricType::kHistogram: {
        const double divisor = s.layout->divisor();
        out.append("count=");
        AppendUint(&out, s.histogram.count());
        out.append(" sum=");
        AppendScaled(&out, s.histogram.sum(), divisor);
        for (const NamedPercentile& p : kPercentiles) {
          absl::StrAppend(&out, " ", p.name, "=");
          AppendDouble(&out, s.histogram.Percentile(p.q) / divisor, "nan");
        }
        break;
      }
    }
    out.push_back('\n');
  }
  return out;
}

std::string FormatJson(const StatsSnapshot& snapshot, absl::string_view name_filter) {
  std::string out = "{\"stats\":[";
  out.reserve(snapshot.series.size() * 96);
  bool first = true;
  for (const SeriesSnapshot& s : snapshot.series) {
    if (!absl::StrContains(s.name, name_filter)) continue;
    out.append(first ? "\n" : ",\n");
    first = false;
    out.append("{\"name\":");
    AppendJsonString(&out, s.name);
    absl::StrAppend(&out, ",\"type\":\"", MetricTypeName(s.type), "\",\"labels\":{");
    for (size_t i = 0; i < s.labels.size(); ++i) {
      if (i > 0) out.push_back(',');
      AppendJsonString(&out, s.labels[i].first);
      out.push_back(':');
      AppendJsonString(&out, s.labels[i].second);
    }
    out.append("}");
    switch (s.type) {
      case MetricType::kCounter:
        out.append(",\"value\":");
        AppendUint(&out, s.counter);
        break;
      case MetricType::kGauge:
        out.append(",\"value\":");
        AppendInt(&out, s.gauge);
        break;
      case MetricType::kHistogram: {
        const double divisor = s.layout->divisor();
        out.append(",\"count\":");
        AppendUint(&out, s.histogram.count());
        out.append(",\"sum\":");
        AppendScaled(&out, s.histogram.sum(), divisor);
        out.append(",\"percentiles\":{");
        bool first_percentile = true;
        for (const NamedPercentile& p : kPercentiles) {
          if (!first_percentile) out.push_back(',');
          first_percentile = false;
          absl::StrAppend(&out, "\"", p.name, "\":");
          // JSON has no NaN; an empty histogram has no percentiles.
          AppendDouble(&out, s.histogram.Percentile(p.q) / divisor, "null");
        }
        out.append("}");
        break;
      }
    }
    out.append("}");
  }
  out.append(first ? "]}\n" : "\n]}\n");
  return out;
}

}  // namespace meshlet
