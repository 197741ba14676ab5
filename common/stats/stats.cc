#include "common/stats/stats.h"

#include <algorithm>
#include <limits>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/container/node_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/types/span.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/stats/names.h"

namespace meshlet {

// ---------------------------------------------------------------------------------------------
// Handles and cells

namespace stats_internal {

Cell* DiscardCells() {
  // Histograms' pages recorded into here are allocated once and never freed.
  static Cell cells[HistogramCells::kShardCells];
  return cells;
}

const HistogramLayout* DiscardLayout() {
  static const HistogramLayout* const layout = new HistogramLayout(*HistogramLayout::Create({}, 1));
  return layout;
}

Cell* CellArena::Allocate(size_t n) {
  CHECK(n <= kBlockCells) << "a series needs " << n << " cells; blocks hold " << kBlockCells;
  if (n > kLargeCells) {
    const size_t lines = HistogramCells::PageBytes(n) / sizeof(CellLine);
    large_.push_back(std::unique_ptr<CellLine[]>(new CellLine[lines]()));
    large_lines_ += lines;
    return large_.back()[0].cells;
  }
  if (used_in_last_ + n > kBlockCells) {
    blocks_.push_back(std::make_unique<Block>());
    used_in_last_ = 0;
  }
  Cell* cells = blocks_.back()->cells + used_in_last_;
  used_in_last_ += n;
  return cells;
}

size_t CellArena::bytes() const {
  return blocks_.size() * sizeof(Block) + large_lines_ * sizeof(CellLine);
}

namespace {

// Adds one shard's HistogramCells to `dense`, laid out as HistogramLayout's cells
// ([fine buckets | sum | splits], `bounds` split counters).
void AddHistogramCells(const Cell* cells, size_t bounds, uint64_t* dense) {
  dense[HistogramLayout::kSumCell] += cells[HistogramCells::kSum].load(std::memory_order_relaxed);
  for (size_t p = 0; p < HistogramCells::kPages; ++p) {
    const Cell* page = HistogramCells::PageAt(cells, HistogramCells::kFirstPage + p);
    if (page == nullptr) continue;
    for (size_t i = 0; i < HistogramCells::kPageCells; ++i) {
      dense[p * HistogramCells::kPageCells + i] += page[i].load(std::memory_order_relaxed);
    }
  }
  if (const Cell* splits = HistogramCells::PageAt(cells, HistogramCells::kSplits)) {
    for (size_t j = 0; j < bounds; ++j) {
      dense[HistogramLayout::kFirstSplitCell + j] += splits[j].load(std::memory_order_relaxed);
    }
  }
}

// Bytes of the pages a histogram's cells hold.
size_t HistogramPageBytes(const Cell* cells, size_t bounds) {
  size_t bytes = 0;
  for (size_t p = 0; p < HistogramCells::kPages; ++p) {
    if (HistogramCells::PageAt(cells, HistogramCells::kFirstPage + p) != nullptr) {
      bytes += HistogramCells::PageBytes(HistogramCells::kPageCells);
    }
  }
  if (HistogramCells::PageAt(cells, HistogramCells::kSplits) != nullptr) {
    bytes += HistogramCells::PageBytes(bounds);
  }
  return bytes;
}

void FreeHistogramPages(Cell* cells) {
  for (size_t slot = HistogramCells::kFirstPage; slot <= HistogramCells::kSplits; ++slot) {
    delete[] reinterpret_cast<CellLine*>(cells[slot].exchange(0, std::memory_order_acquire));
  }
}

}  // namespace
}  // namespace stats_internal

static_assert(stats_internal::HistogramCells::kShardCells <=
              stats_internal::CellArena::kLargeCells);

void AppendPrometheusLabels(std::string* out, const LabelsView& labels) {
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) out->push_back(',');
    const auto [name, value] = labels[i];
    absl::StrAppend(out, name, "=\"");
    stats_internal::AppendEscapedLabelValue(out, value);
    out->push_back('"');
  }
}

const SeriesSnapshot* StatsSnapshot::Find(absl::string_view name, const LabelSet& labels) const& {
  for (const SeriesSnapshot& s : series) {
    if (s.name != name || s.labels.size() != labels.size()) continue;
    const bool match = std::all_of(labels.begin(), labels.end(), [&](const auto& label) {
      return std::any_of(s.labels.begin(), s.labels.end(), [&](const auto& have) {
        return have.first == label.first && have.second == label.second;
      });
    });
    if (match) return &s;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// StatsRegistry

struct StatsRegistry::Series {
  // Merged (and retired) cells: a histogram's HistogramLayout::cell_count(), else 1.
  uint32_t cell_count() const;
  // Cells in each shard: a histogram's HistogramCells::kShardCells, else 1.
  uint32_t shard_cells() const;

  const Family* family = nullptr;
  // In the family's label-name order; interned in label_values_. Two inline: a cluster's series
  // carry `cluster` and at most one more label, so their values take no allocation of their own.
  absl::InlinedVector<const std::string*, 2> values;
  uint32_t index = 0;  // its id
};

namespace {
using LabelValues = absl::Span<const absl::string_view>;
}  // namespace

// Orders a family's series by label values (byte order, label by label), comparing the values the
// series hold: the index keeps no copy of them.
struct StatsRegistry::SeriesByValues {
  using is_transparent = void;
  using Stored = absl::Span<const std::string* const>;
  static absl::string_view Value(const std::string* value) { return *value; }
  static absl::string_view Value(absl::string_view value) { return value; }
  template <typename A, typename B>
  static bool Less(A a, B b) {
    return std::lexicographical_compare(
        a.begin(), a.end(), b.begin(), b.end(),
        [](const auto& x, const auto& y) { return Value(x) < Value(y); });
  }
  bool operator()(const Series* a, const Series* b) const {
    return Less(Stored(a->values), Stored(b->values));
  }
  bool operator()(const Series* a, LabelValues b) const { return Less(Stored(a->values), b); }
  bool operator()(LabelValues a, const Series* b) const { return Less(a, Stored(b->values)); }
};

struct StatsRegistry::Family {
  std::string name;
  std::string help;
  MetricType type;
  GaugeMerge merge = GaugeMerge::kSum;
  bool computed = false;                 // AddGaugeCollector's: no registered series
  std::vector<std::string> label_names;  // first registration's order
  std::unique_ptr<const HistogramLayout> layout;
  // Ordered by label values: it is the exposition order. A B-tree of pointers to the series,
  // which own their values: ~8 bytes a series, where a map keyed by copies of the values cost
  // ~200.
  absl::btree_set<const Series*, SeriesByValues> series;
};

uint32_t StatsRegistry::Series::cell_count() const {
  return family->layout != nullptr ? static_cast<uint32_t>(family->layout->cell_count()) : 1;
}
uint32_t StatsRegistry::Series::shard_cells() const {
  return family->layout != nullptr ? uint32_t{stats_internal::HistogramCells::kShardCells} : 1;
}

struct StatsRegistry::Declaration {
  absl::string_view name;
  absl::string_view help;
  const LabelSet& labels;
  MetricType type;
  GaugeMerge merge = GaugeMerge::kSum;
  const HistogramOptions* histogram = nullptr;
  bool exempt = false;  // the registry's own refusal counters: in no budget
};

StatsRegistry::StatsRegistry() : StatsRegistry(Options()) {}

StatsRegistry::StatsRegistry(Options options) : options_(std::move(options)) {
  shared_shard_ = std::unique_ptr<StatsShard>(new StatsShard(this, /*shared=*/true));
  MutexLock lock(&mu_);
  shards_.push_back(shared_shard_.get());
}

StatsRegistry::~StatsRegistry() {
  shared_shard_.reset();
  MutexLock lock(&mu_);
  CHECK(shards_.empty()) << shards_.size()
                         << " StatsShard(s) outlive their StatsRegistry; destroy them first";
}

absl::StatusOr<CounterId> StatsRegistry::RegisterCounter(absl::string_view name,
                                                         absl::string_view help,
                                                         const LabelSet& labels) {
  ASSIGN_OR_RETURN(uint32_t index, Register({name, help, labels, MetricType::kCounter}));
  return CounterId(index);
}

absl::StatusOr<GaugeId> StatsRegistry::RegisterGauge(absl::string_view name, absl::string_view help,
                                                     const LabelSet& labels, GaugeMerge merge) {
  ASSIGN_OR_RETURN(uint32_t index, Register({name, help, labels, MetricType::kGauge, merge}));
  return GaugeId(index);
}

absl::StatusOr<HistogramId> StatsRegistry::RegisterHistogram(absl::string_view name,
                                                             absl::string_view help,
                                                             const LabelSet& labels,
                                                             const HistogramOptions& options) {
  ASSIGN_OR_RETURN(uint32_t index, Register({name, help, labels, MetricType::kHistogram,
                                             GaugeMerge::kSum, &options}));
  return HistogramId(index);
}

absl::Status StatsRegistry::CheckBudgetLocked(absl::string_view name, bool scoped,
                                              bool exempt) const {
  if (exempt) return absl::OkStatus();
  if (scoped && scoped_series_ >= options_.max_scoped_series) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot register \"", name, "\": the ", options_.max_scoped_series,
                     "-series limit of ", options_.scoped_label, " series is reached"));
  }
  if (!scoped && fixed_series_ >= options_.max_series) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot register \"", name, "\": the ", options_.max_series, "-series limit is reached"));
  }
  return absl::OkStatus();
}

void StatsRegistry::CountRefused(bool scoped) {
  const std::string name = absl::StrCat(options_.name_prefix, "stats_series_refused_total");
  const LabelSet labels = {{"budget", scoped ? "scoped" : "fixed"}};
  bool unused;
  absl::StatusOr<uint32_t> index = RegisterUncounted(
      {.name = name,
       .help = "Series not registered because their budget (max_series, or max_scoped_series "
               "for per-cluster series) was used up.",
       .labels = labels,
       .type = MetricType::kCounter,
       .exempt = true},
      &unused);
  // Only a prefix the metric-name rules refuse can fail here; the refusal itself was returned.
  if (index.ok()) shared_shard_->Get(CounterId(*index)).Inc();
}

absl::StatusOr<uint32_t> StatsRegistry::Register(const Declaration& d) {
  bool scoped = false;
  absl::StatusOr<uint32_t> index = RegisterUncounted(d, &scoped);
  if (absl::IsResourceExhausted(index.status())) CountRefused(scoped);
  return index;
}

absl::StatusOr<uint32_t> StatsRegistry::RegisterUncounted(const Declaration& d, bool* scoped) {
  // Everything that does not depend on existing registrations is checked before locking.
  RETURN_IF_ERROR(stats_internal::ValidateMetricName(d.name, d.type, options_.name_prefix));
  RETURN_IF_ERROR(Annotate(stats_internal::ValidateHelp(d.help), d.name));
  for (size_t i = 0; i < d.labels.size(); ++i) {
    const auto& [label, value] = d.labels[i];
    RETURN_IF_ERROR(Annotate(stats_internal::ValidateLabelName(label, d.type), d.name));
    if (!stats_internal::IsValidUtf8(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat(d.name, ": value of label \"", label, "\" is not valid UTF-8"));
    }
    for (size_t k = 0; k < i; ++k) {
      if (d.labels[k].first == label) {
        return absl::InvalidArgumentError(
            absl::StrCat(d.name, ": label \"", label, "\" given twice"));
      }
    }
  }
  std::unique_ptr<const HistogramLayout> layout;
  if (d.type == MetricType::kHistogram) {
    absl::StatusOr<HistogramLayout> created =
        HistogramLayout::Create(d.histogram->bounds, d.histogram->exposition_divisor);
    if (!created.ok()) return Annotate(created.status(), d.name);
    layout = std::make_unique<const HistogramLayout>(*std::move(created));
  }

  *scoped = !options_.scoped_label.empty() &&
            std::any_of(d.labels.begin(), d.labels.end(),
                        [&](const auto& label) { return label.first == options_.scoped_label; });

  MutexLock lock(&mu_);
  auto it = families_.find(d.name);
  if (it == families_.end()) {
    // A new metric always brings a new series; refuse before the name is taken.
    RETURN_IF_ERROR(CheckBudgetLocked(d.name, *scoped, d.exempt));
    auto family = std::make_unique<Family>();
    family->name = std::string(d.name);
    family->help = std::string(d.help);
    family->type = d.type;
    family->merge = d.merge;
    for (const auto& label : d.labels) family->label_names.push_back(label.first);
    family->layout = std::move(layout);
    it = families_.emplace(family->name, std::move(family)).first;
  } else {
    const Family& family = *it->second;
    if (family.computed) {
      return absl::AlreadyExistsError(
          absl::StrCat("metric \"", d.name, "\" is computed when read; it cannot be registered"));
    }
    if (family.type != d.type) {
      return absl::AlreadyExistsError(absl::StrCat("metric \"", d.name, "\" is already a ",
                                                   MetricTypeName(family.type), ", not a ",
                                                   MetricTypeName(d.type)));
    }
    const bool same_label_names =
        family.label_names.size() == d.labels.size() &&
        std::all_of(d.labels.begin(), d.labels.end(), [&](const auto& label) {
          return std::find(family.label_names.begin(), family.label_names.end(), label.first) !=
                 family.label_names.end();
        });
    if (!same_label_names) {
      return absl::AlreadyExistsError(absl::StrCat("metric \"", d.name, "\" has labels {",
                                                   absl::StrJoin(family.label_names, ","),
                                                   "}; every series needs the same"));
    }
    if (family.merge != d.merge) {
      return absl::AlreadyExistsError(
          absl::StrCat("gauge \"", d.name, "\" is already registered with another merge mode"));
    }
    if (layout != nullptr && !(*layout == *family.layout)) {
      return absl::AlreadyExistsError(absl::StrCat(
          "histogram \"", d.name, "\" is already registered with other bounds or divisor"));
    }
  }
  Family& family = *it->second;

  absl::InlinedVector<absl::string_view, 4> values;
  values.reserve(family.label_names.size());
  for (const std::string& label_name : family.label_names) {
    for (const auto& [label, value] : d.labels) {
      if (label == label_name) values.push_back(value);
    }
  }
  if (auto found = family.series.find(LabelValues(values)); found != family.series.end()) {
    return (*found)->index;
  }
  RETURN_IF_ERROR(CheckBudgetLocked(d.name, *scoped, d.exempt));

  const uint32_t index = series_size_;
  if (index % kSeriesChunk == 0) series_chunks_.push_back(std::make_unique<Series[]>(kSeriesChunk));
  Series* series = &series_chunks_.back()[index % kSeriesChunk];
  series->family = &family;
  series->values.reserve(values.size());
  for (absl::string_view value : values) {
    auto interned = label_values_.find(value);
    if (interned == label_values_.end()) interned = label_values_.emplace(value).first;
    series->values.push_back(&*interned);
  }
  if (family.type == MetricType::kGauge && family.merge == GaugeMerge::kGlobal) {
    global_cell_by_series_[index] = global_cells_.Allocate(1);
  }
  if (!d.exempt) ++(*scoped ? scoped_series_ : fixed_series_);
  series->index = index;
  ++series_size_;
  family.series.insert(series);
  return index;
}

// ---------------------------------------------------------------------------------------------
// Gauge collectors

namespace stats_internal {

struct CollectorSlot {
  const void* family = nullptr;  // the StatsRegistry::Family it reports
  size_t label_count = 0;
  // Held while `collect` runs, so a handle's reset waits for a call in progress.
  Mutex mu;
  std::function<void(GaugeRows&)> collect ABSL_GUARDED_BY(mu);
};

}  // namespace stats_internal

void GaugeRows::Add(std::initializer_list<absl::string_view> values, int64_t value) {
  if (values.size() != label_count_ ||
      !std::all_of(values.begin(), values.end(), stats_internal::IsValidUtf8)) {
    ++dropped_;
    return;
  }
  Row& row = rows_.emplace_back();
  row.values.reserve(values.size());
  for (absl::string_view value : values) row.values.emplace_back(value);
  row.value = value;
}

StatsRegistry::CollectorHandle& StatsRegistry::CollectorHandle::operator=(
    CollectorHandle&& other) noexcept {
  if (this != &other) {
    Reset();
    slot_ = std::move(other.slot_);
  }
  return *this;
}

StatsRegistry::CollectorHandle::~CollectorHandle() { Reset(); }

void StatsRegistry::CollectorHandle::Reset() {
  if (slot_ == nullptr) return;
  {
    MutexLock lock(&slot_->mu);
    slot_->collect = nullptr;
  }
  slot_.reset();
}

absl::StatusOr<StatsRegistry::CollectorHandle> StatsRegistry::AddGaugeCollector(
    absl::string_view name, absl::string_view help, std::vector<std::string> label_names,
    std::function<void(GaugeRows&)> collect) {
  RETURN_IF_ERROR(
      stats_internal::ValidateMetricName(name, MetricType::kGauge, options_.name_prefix));
  RETURN_IF_ERROR(Annotate(stats_internal::ValidateHelp(help), name));
  for (size_t i = 0; i < label_names.size(); ++i) {
    RETURN_IF_ERROR(
        Annotate(stats_internal::ValidateLabelName(label_names[i], MetricType::kGauge), name));
    if (std::find(label_names.begin(), label_names.begin() + i, label_names[i]) !=
        label_names.begin() + i) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": label \"", label_names[i], "\" given twice"));
    }
  }
  MutexLock lock(&mu_);
  if (families_.contains(name)) {
    return absl::AlreadyExistsError(absl::StrCat("metric \"", name, "\" is already registered"));
  }
  auto family = std::make_unique<Family>();
  family->name = std::string(name);
  family->help = std::string(help);
  family->type = MetricType::kGauge;
  family->merge = GaugeMerge::kGlobal;
  family->computed = true;
  family->label_names = std::move(label_names);
  auto slot = std::make_shared<stats_internal::CollectorSlot>();
  slot->family = family.get();
  slot->label_count = family->label_names.size();
  {
    MutexLock slot_lock(&slot->mu);
    slot->collect = std::move(collect);
  }
  families_.emplace(family->name, std::move(family));
  collectors_.push_back(slot);
  return CollectorHandle(std::move(slot));
}

std::unique_ptr<StatsShard> StatsRegistry::CreateShard() {
  auto shard = std::unique_ptr<StatsShard>(new StatsShard(this, /*shared=*/false));
  MutexLock lock(&mu_);
  shards_.push_back(shard.get());
  return shard;
}

const StatsRegistry::Series& StatsRegistry::SeriesFor(uint32_t index, MetricType type) const {
  CHECK(index < series_size_) << "stat id " << index << " is not from this registry";
  const Series& series = SeriesAtLocked(index);
  CHECK(series.family->type == type)
      << "stat id " << index << " names a " << MetricTypeName(series.family->type) << ", not a "
      << MetricTypeName(type);
  return series;
}

StatsRegistry::Series& StatsRegistry::SeriesAtLocked(uint32_t index) const {
  static_assert(sizeof(Series) <= 40, "the record of every series: keep it small");
  return series_chunks_[index / kSeriesChunk][index % kSeriesChunk];
}

void StatsRegistry::MergeLocked(uint32_t index, std::vector<uint64_t>* total) const {
  const Series& series = SeriesAtLocked(index);
  total->assign(series.cell_count(), 0);
  if (!retired_.empty()) {
    if (auto retired = retired_.find(index); retired != retired_.end()) {
      total->assign(retired->second.get(), retired->second.get() + series.cell_count());
    }
  }
  if (series.family->merge == GaugeMerge::kGlobal && series.family->type == MetricType::kGauge) {
    (*total)[0] += global_cell_by_series_.at(index)->load(std::memory_order_relaxed);
  }
  for (const StatsShard* shard : shards_) {
    const stats_internal::Cell* cells = shard->FindCellsLocked(index);
    if (cells == nullptr) continue;
    if (series.family->layout != nullptr) {
      stats_internal::AddHistogramCells(cells, series.family->layout->bounds().size(),
                                        total->data());
      continue;
    }
    for (size_t i = 0; i < series.cell_count(); ++i) {
      (*total)[i] += cells[i].load(std::memory_order_relaxed);
    }
  }
}

StatsSnapshot StatsRegistry::Snapshot() const {
  StatsSnapshot snapshot;
  // Collectors first, without mu_: they may take locks held while registering.
  std::vector<std::shared_ptr<stats_internal::CollectorSlot>> collectors;
  {
    MutexLock lock(&mu_);
    collectors = collectors_;
  }
  absl::flat_hash_map<const void*, std::vector<GaugeRows::Row>> computed;
  size_t computed_rows = 0;
  size_t dropped = 0;
  for (const auto& slot : collectors) {
    GaugeRows rows(slot->label_count);
    {
      MutexLock lock(&slot->mu);
      if (!slot->collect) continue;
      slot->collect(rows);
    }
    dropped += rows.dropped_;
    computed_rows += rows.rows_.size();
    std::vector<GaugeRows::Row>& out = computed[slot->family];
    for (GaugeRows::Row& row : rows.rows_) out.push_back(std::move(row));
  }
  if (dropped > 0) {
    // Registered with the first drop; only the fixed budget can refuse it (counted there).
    absl::StatusOr<Counter> counter = shared_shard_->RegisterCounter(
        absl::StrCat(options_.name_prefix, "stats_computed_series_dropped_total"),
        "Series a computed gauge reported with the wrong number of labels or a label value that "
        "is not UTF-8, left out of the read.");
    if (counter.ok()) counter->Inc(dropped);
  }
  std::shared_ptr<std::vector<std::vector<std::string>>> computed_labels;
  if (computed_rows > 0) {
    computed_labels = std::make_shared<std::vector<std::vector<std::string>>>();
    computed_labels->reserve(computed_rows);
  }

  std::vector<uint64_t> merged;
  MutexLock lock(&mu_);
  snapshot.series.reserve(series_size_ + computed_rows);
  for (const auto& [name, family] : families_) {
    if (family->computed) {
      auto rows = computed.find(family.get());
      if (rows == computed.end()) continue;
      std::sort(
          rows->second.begin(), rows->second.end(),
          [](const GaugeRows::Row& a, const GaugeRows::Row& b) { return a.values < b.values; });
      for (GaugeRows::Row& row : rows->second) {
        const std::vector<std::string>& values =
            computed_labels->emplace_back(std::move(row.values));
        SeriesSnapshot& out = snapshot.series.emplace_back();
        out.type = MetricType::kGauge;
        out.name = family->name;
        out.help = family->help;
        out.labels = LabelsView(family->label_names.data(), values.data(), values.size());
        out.gauge = row.value;
      }
      continue;
    }
    SnapshotFamilyLocked(*family, merged, snapshot);
  }
  snapshot.computed_labels = std::move(computed_labels);
  return snapshot;
}

StatsSnapshot StatsRegistry::Snapshot(absl::Span<const absl::string_view> families) const {
  StatsSnapshot snapshot;
  std::vector<uint64_t> merged;
  MutexLock lock(&mu_);
  for (absl::string_view name : families) {
    auto it = families_.find(name);
    if (it != families_.end() && !it->second->computed) {
      SnapshotFamilyLocked(*it->second, merged, snapshot);
    }
  }
  return snapshot;
}

void StatsRegistry::SnapshotFamilyLocked(const Family& family, std::vector<uint64_t>& merged,
                                         StatsSnapshot& snapshot) const {
  for (const Series* in_family : family.series) {
    const Series& series = *in_family;
    SeriesSnapshot& out = snapshot.series.emplace_back();
    out.type = family.type;
    out.name = family.name;
    out.help = family.help;
    out.labels = LabelsView(family.label_names.data(), series.values.data(), series.values.size());
    MergeLocked(series.index, &merged);
    switch (family.type) {
      case MetricType::kCounter:
        out.counter = merged[0];
        break;
      case MetricType::kGauge:
        out.gauge = static_cast<int64_t>(merged[0]);
        break;
      case MetricType::kHistogram:
        out.layout = family.layout.get();
        out.histogram = HistogramSnapshot(*family.layout, merged);
        break;
    }
  }
}

uint64_t StatsRegistry::CounterValue(CounterId id) const {
  std::vector<uint64_t> merged;
  MutexLock lock(&mu_);
  SeriesFor(id.index_, MetricType::kCounter);
  MergeLocked(id.index_, &merged);
  return merged[0];
}

int64_t StatsRegistry::GaugeValue(GaugeId id) const {
  std::vector<uint64_t> merged;
  MutexLock lock(&mu_);
  SeriesFor(id.index_, MetricType::kGauge);
  MergeLocked(id.index_, &merged);
  return static_cast<int64_t>(merged[0]);
}

HistogramSnapshot StatsRegistry::HistogramValue(HistogramId id) const {
  std::vector<uint64_t> merged;
  MutexLock lock(&mu_);
  const Series& series = SeriesFor(id.index_, MetricType::kHistogram);
  MergeLocked(id.index_, &merged);
  return HistogramSnapshot(*series.family->layout, merged);
}

size_t StatsRegistry::series_count() const {
  MutexLock lock(&mu_);
  return series_size_;
}

size_t StatsRegistry::fixed_series_count() const {
  MutexLock lock(&mu_);
  return fixed_series_;
}

size_t StatsRegistry::scoped_series_count() const {
  MutexLock lock(&mu_);
  return scoped_series_;
}

// ---------------------------------------------------------------------------------------------
// StatsShard

StatsShard::~StatsShard() {
  MutexLock lock(&registry_->mu_);
  for (size_t index = 0; index < cells_by_series_.size(); ++index) {
    stats_internal::Cell* cells = cells_by_series_[index];
    if (cells == nullptr) continue;
    const StatsRegistry::Series& series = registry_->SeriesAtLocked(static_cast<uint32_t>(index));
    std::unique_ptr<uint64_t[]>& retired = registry_->retired_[static_cast<uint32_t>(index)];
    if (retired == nullptr) retired = std::make_unique<uint64_t[]>(series.cell_count());  // zeroed
    if (series.family->layout != nullptr) {
      stats_internal::AddHistogramCells(cells, series.family->layout->bounds().size(),
                                        retired.get());
      stats_internal::FreeHistogramPages(cells);
      continue;
    }
    for (size_t i = 0; i < series.cell_count(); ++i) {
      retired[i] += cells[i].load(std::memory_order_relaxed);
    }
  }
  auto& shards = registry_->shards_;
  shards.erase(std::find(shards.begin(), shards.end(), this));
}

size_t StatsShard::cell_bytes() const {
  MutexLock lock(&registry_->mu_);
  size_t bytes = arena_.bytes();
  for (size_t index = 0; index < cells_by_series_.size(); ++index) {
    const stats_internal::Cell* cells = cells_by_series_[index];
    const HistogramLayout* layout =
        registry_->SeriesAtLocked(static_cast<uint32_t>(index)).family->layout.get();
    if (cells != nullptr && layout != nullptr) {
      bytes += stats_internal::HistogramPageBytes(cells, layout->bounds().size());
    }
  }
  return bytes;
}

stats_internal::Cell* StatsShard::FindCellsLocked(uint32_t series_index) const {
  return series_index < cells_by_series_.size() ? cells_by_series_[series_index] : nullptr;
}

stats_internal::Cell* StatsShard::CellsLocked(uint32_t series_index, size_t cell_count) {
  if (series_index >= cells_by_series_.size()) cells_by_series_.resize(series_index + 1, nullptr);
  stats_internal::Cell*& cells = cells_by_series_[series_index];
  if (cells == nullptr) cells = arena_.Allocate(cell_count);
  return cells;
}

Counter StatsShard::Get(CounterId id) {
  MutexLock lock(&registry_->mu_);
  const StatsRegistry::Series& series = registry_->SeriesFor(id.index_, MetricType::kCounter);
  return Counter(CellsLocked(id.index_, series.shard_cells()), shared_);
}

Gauge StatsShard::Get(GaugeId id) {
  MutexLock lock(&registry_->mu_);
  const StatsRegistry::Series& series = registry_->SeriesFor(id.index_, MetricType::kGauge);
  if (series.family->merge == GaugeMerge::kGlobal) {
    return Gauge(registry_->global_cell_by_series_.at(id.index_), /*shared=*/true);
  }
  return Gauge(CellsLocked(id.index_, series.shard_cells()), shared_);
}

Histogram StatsShard::Get(HistogramId id) {
  MutexLock lock(&registry_->mu_);
  const StatsRegistry::Series& series = registry_->SeriesFor(id.index_, MetricType::kHistogram);
  return Histogram(CellsLocked(id.index_, series.shard_cells()), series.family->layout.get(),
                   shared_);
}

absl::StatusOr<Counter> StatsShard::RegisterCounter(absl::string_view name, absl::string_view help,
                                                    const LabelSet& labels) {
  ASSIGN_OR_RETURN(CounterId id, registry_->RegisterCounter(name, help, labels));
  return Get(id);
}

absl::StatusOr<Gauge> StatsShard::RegisterGauge(absl::string_view name, absl::string_view help,
                                                const LabelSet& labels, GaugeMerge merge) {
  ASSIGN_OR_RETURN(GaugeId id, registry_->RegisterGauge(name, help, labels, merge));
  return Get(id);
}

absl::StatusOr<Histogram> StatsShard::RegisterHistogram(absl::string_view name,
                                                        absl::string_view help,
                                                        const LabelSet& labels,
                                                        const HistogramOptions& options) {
  ASSIGN_OR_RETURN(HistogramId id, registry_->RegisterHistogram(name, help, labels, options));
  return Get(id);
}

}  // namespace meshlet
