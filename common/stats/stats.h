#pragma once

// Counters, gauges and histograms that many threads record into without taking a lock.
//
// Ownership and threads:
// - One StatsRegistry per process, owned by the composition root. It holds every declared
//   metric (name, help, type, fixed labels) and the list of shards. It must outlive all shards
//   and snapshots made from it.
// - Each thread that records stats owns a StatsShard (a worker creates one at startup and
//   destroys it on exit). Destroying a shard folds its values into the registry, so counters stay
//   monotonic and gauge sums stay balanced when a worker goes away.
// - Handles (Counter, Gauge, Histogram) are small values obtained from a shard once, at startup
//   or config-change time, and then used on the hot path. A handle from a worker's shard points
//   at memory only that thread writes: recording is a relaxed load and store on a thread-owned
//   cache line — no lock, no lookup, no locked instruction. Such a handle must only be used on
//   the shard's thread, and must not outlive the shard.
// - Handles from shared_shard(), and handles of GaugeMerge::kGlobal gauges, may be used from any
//   thread; they use relaxed atomic read-modify-writes.
// - Registration, obtaining handles, creating/destroying shards and reading (Snapshot and the
//   *Value accessors) take the registry's mutex and may run on any thread concurrently with
//   recording. A read sees each cell at some recent point; it never sees a torn value, but the
//   parts of one histogram (buckets, sum) may be a few samples apart.
//
// Usage, on a worker:
//
//   std::unique_ptr<StatsShard> shard = registry.CreateShard();          // worker start
//   ASSIGN_OR_RETURN(Counter rq_5xx,                                       // config change
//                    shard->RegisterCounter("meshlet_upstream_rq_total", "Upstream requests.",
//                                           {{"cluster", name}, {"code_class", "5xx"}}));
//   rq_5xx.Inc();                                                         // per request
//
// Names follow Prometheus conventions and are checked at registration: lower snake_case, the
// registry's prefix (`meshlet_` by default), counters end in `_total` and nothing else does,
// no `_bucket`/`_sum`/`_count` suffixes, no type name inside the name. Labels are fixed per
// series; every series of one metric has the same label names.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/base/sync.h"
#include "common/stats/histogram_buckets.h"

namespace meshlet {

class StatsRegistry;
class StatsShard;

enum class MetricType { kCounter, kGauge, kHistogram };
absl::string_view MetricTypeName(MetricType type);  // "counter", "gauge", "histogram"

// How a gauge's per-shard values combine on read.
enum class GaugeMerge {
  // Each shard holds its own contribution (e.g. connections open on that worker); reads sum them.
  kSum,
  // One process-wide value (e.g. a config version), settable from any thread.
  kGlobal,
};

// Label name/value pairs, fixed when a series is registered.
using LabelSet = std::vector<std::pair<std::string, std::string>>;

// 1-2.5-5 steps from 1 to 1e7 plus 3e7 and 6e7: in microseconds, 1 µs to 60 s.
std::vector<uint64_t> DefaultHistogramBounds();

struct HistogramOptions {
  // Upper bounds (inclusive, in recorded units) of the Prometheus `le` buckets; `+Inf` is
  // implicit. Strictly increasing, at most HistogramLayout::kMaxBounds.
  std::vector<uint64_t> bounds = DefaultHistogramBounds();
  // Exposed value = recorded value / divisor. Record microseconds and expose `_seconds` with 1e6.
  double exposition_divisor = 1.0;
};

// Typed series ids returned by registration. Cheap to copy; valid for the registry's lifetime.
template <MetricType kType>
class StatId {
 public:
  StatId() = default;
  bool valid() const { return index_ != kInvalid; }
  bool operator==(const StatId&) const = default;

 private:
  friend class StatsRegistry;
  friend class StatsShard;
  static constexpr uint32_t kInvalid = UINT32_MAX;
  explicit StatId(uint32_t index) : index_(index) {}
  uint32_t index_ = kInvalid;
};
using CounterId = StatId<MetricType::kCounter>;
using GaugeId = StatId<MetricType::kGauge>;
using HistogramId = StatId<MetricType::kHistogram>;

namespace stats_internal {

using Cell = std::atomic<uint64_t>;
static_assert(alignof(Cell) >= 8, "CellWord() keeps flags in a cell address's low 3 bits");

// `shared` cells may have several writers and need a locked add; thread-owned cells need only a
// load and a store, which compiles to a plain memory add.
inline void AddToCell(Cell* cell, uint64_t n, bool shared) {
  if (shared) {
    cell->fetch_add(n, std::memory_order_relaxed);
  } else {
    cell->store(cell->load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
}

// A Counter's or Gauge's cell in one word, for a handle that keeps another state in the same
// bytes until it has a series (a lazily registered one, sidecar/cluster/upstream_stats.h): the
// cell's address with bit 0 set when the cell is shared. Bits 1 and 2 are always clear.
inline uint64_t CellWord(Cell* cell, bool shared) {
  return reinterpret_cast<uintptr_t>(cell) | (shared ? 1 : 0);
}
inline Cell* WordCell(uint64_t word) { return reinterpret_cast<Cell*>(word & ~uint64_t{7}); }
inline bool WordShared(uint64_t word) { return (word & 1) != 0; }

// Where default-constructed handles write: lets objects hold handles before stats are wired.
Cell* DiscardCells();
const HistogramLayout* DiscardLayout();

// A cache line of cells; the unit pages and large runs are allocated in.
struct alignas(64) CellLine {
  Cell cells[64 / sizeof(Cell)];
};

// One shard's cells of one histogram series: its sum, then a slot per page of kPageCells fine
// buckets and one for the split counters (one per bound, HistogramLayout), each slot holding a
// CellLine* or 0. A page is allocated, zeroed, by the first sample that lands in it, on the
// recording thread (a release store, or a compare-and-swap in a shard any thread writes), and
// freed with the shard; readers load the slot with acquire. A histogram that recorded a few
// samples holds kShardCells cells and a page or two (~440 bytes) instead of every fine bucket
// (HistogramLayout::cell_count(), ~4.9 KB with the default bounds).
struct HistogramCells {
  static constexpr size_t kPageBits = 4;
  static constexpr size_t kPageCells = size_t{1} << kPageBits;
  static constexpr size_t kPages = HistogramBuckets::kCount / kPageCells;
  static constexpr size_t kSum = 0;  // first, so a Counter or Gauge on DiscardCells() is harmless
  static constexpr size_t kFirstPage = 1;
  static constexpr size_t kSplits = kFirstPage + kPages;
  static constexpr size_t kShardCells = kSplits + 1;

  // The page in `slot`, or nullptr before its first sample.
  static Cell* PageAt(const Cell* cells, size_t slot) {
    const uint64_t line = cells[slot].load(std::memory_order_acquire);
    return line == 0 ? nullptr : reinterpret_cast<CellLine*>(line)->cells;
  }
  // Bytes of a page of `cell_count` cells.
  static constexpr size_t PageBytes(size_t cell_count) {
    return (cell_count + std::size(CellLine{}.cells) - 1) / std::size(CellLine{}.cells) *
           sizeof(CellLine);
  }
};
static_assert(HistogramBuckets::kCount % HistogramCells::kPageCells == 0);

// Cells for one shard, zeroed; addresses are stable until the arena is destroyed. Short runs
// (counters, gauges, histograms' HistogramCells) are cut from shared blocks; a run longer than
// kLargeCells gets an allocation of its own, so it never leaves the rest of a block unused.
class CellArena {
 public:
  static constexpr size_t kBlockCells = 1024;
  static constexpr size_t kLargeCells = kBlockCells / 8;
  Cell* Allocate(size_t n);
  // Bytes the arena holds (the unused tail of its last block included).
  size_t bytes() const;

 private:
  // Cache-line aligned so blocks of different shards never share a line.
  struct alignas(64) Block {
    Cell cells[kBlockCells];
  };
  std::vector<std::unique_ptr<Block>> blocks_;
  std::vector<std::unique_ptr<CellLine[]>> large_;
  size_t large_lines_ = 0;
  size_t used_in_last_ = kBlockCells;
};

}  // namespace stats_internal

// A monotonic count. Exposed as a Prometheus counter.
class Counter {
 public:
  Counter() = default;
  void Inc(uint64_t n = 1) const { stats_internal::AddToCell(cell_, n, shared_); }
  // The handle in one word (stats_internal::CellWord).
  uint64_t word() const { return stats_internal::CellWord(cell_, shared_); }

 private:
  friend class StatsShard;
  Counter(stats_internal::Cell* cell, bool shared) : cell_(cell), shared_(shared) {}
  stats_internal::Cell* cell_ = stats_internal::DiscardCells();
  bool shared_ = true;
};

// A value that goes up and down. For GaugeMerge::kSum gauges, Set() sets this shard's
// contribution; for kGlobal gauges it sets the process-wide value.
class Gauge {
 public:
  Gauge() = default;
  void Add(int64_t delta) const {
    stats_internal::AddToCell(cell_, static_cast<uint64_t>(delta), shared_);
  }
  // Two's-complement negation in unsigned arithmetic, so even INT64_MIN is well defined.
  void Sub(int64_t delta) const {
    stats_internal::AddToCell(cell_, uint64_t{0} - static_cast<uint64_t>(delta), shared_);
  }
  void Inc() const { Add(1); }
  void Dec() const { Sub(1); }
  void Set(int64_t value) const {
    cell_->store(static_cast<uint64_t>(value), std::memory_order_relaxed);
  }
  // The handle in one word (stats_internal::CellWord).
  uint64_t word() const { return stats_internal::CellWord(cell_, shared_); }

 private:
  friend class StatsShard;
  Gauge(stats_internal::Cell* cell, bool shared) : cell_(cell), shared_(shared) {}
  stats_internal::Cell* cell_ = stats_internal::DiscardCells();
  bool shared_ = true;
};

// Increments a gauge for its lifetime: for counts that must balance (active requests,
// connections). Use it on the thread that owns the gauge's shard.
class GaugeGuard {
 public:
  explicit GaugeGuard(Gauge gauge) : gauge_(gauge), engaged_(true) { gauge_.Inc(); }
  GaugeGuard(GaugeGuard&& other) noexcept : gauge_(other.gauge_), engaged_(other.engaged_) {
    other.engaged_ = false;
  }
  GaugeGuard& operator=(GaugeGuard&&) = delete;
  GaugeGuard(const GaugeGuard&) = delete;
  GaugeGuard& operator=(const GaugeGuard&) = delete;
  ~GaugeGuard() {
    if (engaged_) gauge_.Dec();
  }

 private:
  Gauge gauge_;
  bool engaged_;
};

// A distribution of non-negative integers (latency in microseconds, sizes in bytes).
class Histogram {
 public:
  Histogram() = default;
  // The first sample in a page of fine buckets allocates the page (stats_internal::HistogramCells)
  // out of line; every later one costs a load of the page's slot and the two adds.
  void Record(uint64_t value) const {
    using stats_internal::HistogramCells;
    const size_t index = HistogramBuckets::Index(value);
    stats_internal::Cell* page = HistogramCells::PageAt(
        cells_, HistogramCells::kFirstPage + (index >> HistogramCells::kPageBits));
    if (page == nullptr) [[unlikely]] {
      RecordInNewPage(value);
      return;
    }
    stats_internal::AddToCell(page + (index & (HistogramCells::kPageCells - 1)), 1, shared_);
    stats_internal::AddToCell(cells_ + HistogramCells::kSum, value, shared_);
    if (const uint8_t split = layout_->first_split(index); split != 0) [[unlikely]] {
      RecordSplit(index, split - 1, value);
    }
  }

 private:
  friend class StatsShard;
  Histogram(stats_internal::Cell* cells, const HistogramLayout* layout, bool shared)
      : cells_(cells), layout_(layout), shared_(shared) {}
  // The page in `slot` of `cell_count` cells, allocated if absent.
  stats_internal::Cell* Page(size_t slot, size_t cell_count) const;
  // Record() of a sample whose page is not allocated yet.
  void RecordInNewPage(uint64_t value) const;
  void RecordSplit(size_t index, size_t first_bound, uint64_t value) const;

  stats_internal::Cell* cells_ = stats_internal::DiscardCells();
  const HistogramLayout* layout_ = stats_internal::DiscardLayout();
  bool shared_ = true;
};

// Merged view of one histogram series.
class HistogramSnapshot {
 public:
  struct Bucket {
    uint32_t index;  // fine bucket, see HistogramBuckets
    uint64_t count;
  };

  HistogramSnapshot() = default;
  // `cells` are merged cells laid out as `layout` says.
  HistogramSnapshot(const HistogramLayout& layout, const std::vector<uint64_t>& cells);

  uint64_t count() const { return count_; }
  uint64_t sum() const { return sum_; }  // recorded units
  // Non-empty fine buckets in value order.
  const std::vector<Bucket>& buckets() const { return buckets_; }
  // Cumulative counts for each Prometheus bound, in order; the implicit +Inf bucket is count().
  const std::vector<uint64_t>& cumulative_counts() const { return cumulative_; }

  // Nearest-rank percentile, q in [0, 1], in recorded units: the midpoint of the fine bucket
  // holding the ceil(q * count)-th smallest sample. Within HistogramBuckets::kMaxRelativeError
  // of that sample (exact below 32). NaN when empty.
  double Percentile(double q) const;

 private:
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  std::vector<Bucket> buckets_;
  std::vector<uint64_t> cumulative_;
};

// The labels of one series, as (name, value) pairs in the metric's label-name order: a view of
// the metric's label names and of values the registry keeps once per distinct text (a cluster's
// name is stored once for all its series). Valid while the registry lives.
class LabelsView {
 public:
  using value_type = std::pair<absl::string_view, absl::string_view>;
  class iterator {
   public:
    using value_type = LabelsView::value_type;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    value_type operator*() const { return (*view_)[i_]; }
    iterator& operator++() {
      ++i_;
      return *this;
    }
    iterator operator++(int) {
      iterator old = *this;
      ++i_;
      return old;
    }
    bool operator==(const iterator& other) const { return i_ == other.i_; }

   private:
    friend class LabelsView;
    iterator(const LabelsView* view, size_t i) : view_(view), i_(i) {}
    const LabelsView* view_ = nullptr;
    size_t i_ = 0;
  };

  LabelsView() = default;
  // `names` and `values` hold `size` entries each and must outlive the view.
  LabelsView(const std::string* names, const std::string* const* values, size_t size)
      : names_(names), values_(values), size_(size) {}
  // Values held in place (a computed series' copies, StatsSnapshot::computed_labels).
  LabelsView(const std::string* names, const std::string* values, size_t size)
      : names_(names), held_values_(values), size_(size) {}
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  value_type operator[](size_t i) const {
    return {names_[i], values_ != nullptr ? *values_[i] : held_values_[i]};
  }
  iterator begin() const { return iterator(this, 0); }
  iterator end() const { return iterator(this, size_); }

 private:
  const std::string* names_ = nullptr;
  const std::string* const* values_ = nullptr;
  const std::string* held_values_ = nullptr;
  size_t size_ = 0;
};

// Appends `name="escaped value",...` in Prometheus syntax without braces (nothing without labels).
void AppendPrometheusLabels(std::string* out, const LabelsView& labels);

// One merged series. Views point into the registry and stay valid while it lives.
struct SeriesSnapshot {
  MetricType type = MetricType::kCounter;
  absl::string_view name;
  absl::string_view help;
  LabelsView labels;
  uint64_t counter = 0;
  int64_t gauge = 0;
  HistogramSnapshot histogram;
  const HistogramLayout* layout = nullptr;  // histograms only
};

// All series, merged across shards, ordered by name then by label values (byte order).
struct StatsSnapshot {
  std::vector<SeriesSnapshot> series;
  // The label values of computed series (StatsRegistry::AddGaugeCollector), which their labels
  // view; shared by copies of the snapshot. Null when there are none.
  std::shared_ptr<const std::vector<std::vector<std::string>>> computed_labels;

  // Linear scan; for tests and tools. `labels` may be in any order.
  const SeriesSnapshot* Find(absl::string_view name, const LabelSet& labels = {}) const&;
  // The result points into the snapshot: keep the snapshot in a variable first.
  const SeriesSnapshot* Find(absl::string_view name, const LabelSet& labels = {}) && = delete;
};

// The series a gauge collector (StatsRegistry::AddGaugeCollector) reports for one read.
class GaugeRows {
 public:
  // One series: its label values in the order of the collector's label names, and its value.
  // A row with the wrong number of values, or a value that is not UTF-8, is dropped and counted
  // in `<prefix>stats_computed_series_dropped_total`.
  void Add(std::initializer_list<absl::string_view> values, int64_t value);

 private:
  friend class StatsRegistry;
  explicit GaugeRows(size_t label_count) : label_count_(label_count) {}
  struct Row {
    std::vector<std::string> values;
    int64_t value;
  };
  const size_t label_count_;
  std::vector<Row> rows_;
  size_t dropped_ = 0;
};

namespace stats_internal {
struct CollectorSlot;
}  // namespace stats_internal

class StatsRegistry {
 public:
  struct Options {
    // Every metric name must start with this.
    std::string name_prefix = "meshlet_";
    // Registration of a new series beyond this fails: a guard against unbounded label values.
    // Series carrying `scoped_label` do not count here, so however many clusters are
    // configured, the process's fixed series (listeners, server, overload) always find room.
    size_t max_series = 100000;
    // Series with this label (the sidecar's per-cluster series carry `cluster`) are one of a set
    // that grows with the configuration; they have their own budget, max_scoped_series.
    // Empty: every series counts against max_series.
    std::string scoped_label = "cluster";
    size_t max_scoped_series = 100000;
  };

  StatsRegistry();
  explicit StatsRegistry(Options options);
  // All shards but shared_shard() must have been destroyed.
  ~StatsRegistry();
  StatsRegistry(const StatsRegistry&) = delete;
  StatsRegistry& operator=(const StatsRegistry&) = delete;

  // Registering an existing series again returns the same id (the first help text is kept).
  // Errors: InvalidArgument for a bad name, help or labels; AlreadyExists when the name is taken
  // by another type, or with different label names, gauge merge or histogram options;
  // ResourceExhausted past Options::max_series (or max_scoped_series for a scoped series). Each
  // series refused at a limit is counted in `<prefix>stats_series_refused_total{budget}`
  // (budget "fixed" or "scoped"), a series registered on the first refusal and exempt from both
  // limits.
  absl::StatusOr<CounterId> RegisterCounter(absl::string_view name, absl::string_view help,
                                            const LabelSet& labels = {});
  absl::StatusOr<GaugeId> RegisterGauge(absl::string_view name, absl::string_view help,
                                        const LabelSet& labels = {},
                                        GaugeMerge merge = GaugeMerge::kSum);
  absl::StatusOr<HistogramId> RegisterHistogram(absl::string_view name, absl::string_view help,
                                                const LabelSet& labels = {},
                                                const HistogramOptions& options = {});

  // Keeps a gauge collector (AddGaugeCollector) called; destroying it (or assigning over it)
  // stops the calls, waiting for one in progress. It may outlive the registry. Move-only.
  class CollectorHandle {
   public:
    CollectorHandle() = default;
    CollectorHandle(CollectorHandle&&) noexcept = default;
    CollectorHandle& operator=(CollectorHandle&& other) noexcept;
    ~CollectorHandle();
    bool active() const { return slot_ != nullptr; }

   private:
    friend class StatsRegistry;
    explicit CollectorHandle(std::shared_ptr<stats_internal::CollectorSlot> slot)
        : slot_(std::move(slot)) {}
    void Reset();
    std::shared_ptr<stats_internal::CollectorSlot> slot_;
  };
  // A gauge whose series are computed when read instead of registered and recorded: for values
  // that already exist elsewhere (a circuit breaker's capacity left), it costs nothing between
  // reads. Snapshot() calls `collect` on the reading thread, without the registry's mutex held
  // (so it may take locks of its own that are held while registering stats), and exposes its rows
  // under `name` like registered series, sorted by label values. The series are in no budget.
  // Errors: InvalidArgument for a bad name, help or label names; AlreadyExists when the name is
  // taken. A name keeps its family once the handle is gone, reporting no series.
  absl::StatusOr<CollectorHandle> AddGaugeCollector(absl::string_view name, absl::string_view help,
                                                    std::vector<std::string> label_names,
                                                    std::function<void(GaugeRows&)> collect);

  // A shard for one writer thread; destroy it on that thread's way out.
  std::unique_ptr<StatsShard> CreateShard();
  // A shard any thread may record into, for code off the request path.
  StatsShard& shared_shard() { return *shared_shard_; }

  // Merged reads. Cost grows with series × shards; meant for the admin thread.
  StatsSnapshot Snapshot() const;
  // The same for the named families only (in the order given; unknown names and computed gauge
  // families are skipped): for readers that need a few families of a large registry without a copy
  // of it all.
  StatsSnapshot Snapshot(absl::Span<const absl::string_view> families) const;
  uint64_t CounterValue(CounterId id) const;
  int64_t GaugeValue(GaugeId id) const;
  HistogramSnapshot HistogramValue(HistogramId id) const;

  size_t series_count() const;
  // Series registered in each budget (the refusal counters are in neither).
  size_t fixed_series_count() const;
  size_t scoped_series_count() const;
  const Options& options() const { return options_; }

 private:
  friend class StatsShard;
  struct Family;
  struct Series;
  struct SeriesByValues;
  struct Declaration;

  absl::StatusOr<uint32_t> Register(const Declaration& declaration);
  // Register() without the refusal count; `*scoped` tells which budget the series is in.
  absl::StatusOr<uint32_t> RegisterUncounted(const Declaration& declaration, bool* scoped);
  // Checks the budget a new series of `name` would be taken from.
  absl::Status CheckBudgetLocked(absl::string_view name, bool scoped, bool exempt) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountRefused(bool scoped);
  // Sums the series' cells over retired values, the global cell and every live shard.
  void MergeLocked(uint32_t index, std::vector<uint64_t>* total) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends the merged values of every series of `family` (`merged` is scratch).
  void SnapshotFamilyLocked(const Family& family, std::vector<uint64_t>& merged,
                            StatsSnapshot& snapshot) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const Series& SeriesFor(uint32_t index, MetricType type) const;

  const Options options_;
  mutable Mutex mu_;
  std::map<std::string, std::unique_ptr<Family>, std::less<>> families_ ABSL_GUARDED_BY(mu_);
  // Series records by id, kSeriesChunk to an allocation (a record is 40 bytes: one allocation
  // each would add its malloc header and a pointer here); never moved or removed, so ids and
  // pointers stay valid.
  static constexpr size_t kSeriesChunk = 256;
  std::vector<std::unique_ptr<Series[]>> series_chunks_ ABSL_GUARDED_BY(mu_);
  uint32_t series_size_ ABSL_GUARDED_BY(mu_) = 0;
  Series& SeriesAtLocked(uint32_t index) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Kept apart from the records, for the few series that have them: cells folded in from
  // destroyed shards (cell_count() each), and kGlobal gauges' cells.
  absl::flat_hash_map<uint32_t, std::unique_ptr<uint64_t[]>> retired_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, stats_internal::Cell*> global_cell_by_series_ ABSL_GUARDED_BY(mu_);
  // Every distinct label value, once; series hold views of them. Never removed. Node-based, so
  // the views stay valid as it grows.
  absl::node_hash_set<std::string> label_values_ ABSL_GUARDED_BY(mu_);
  size_t fixed_series_ ABSL_GUARDED_BY(mu_) = 0;
  size_t scoped_series_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<StatsShard*> shards_ ABSL_GUARDED_BY(mu_);
  // AddGaugeCollector's, in registration order; a slot whose handle is gone stays, empty.
  std::vector<std::shared_ptr<stats_internal::CollectorSlot>> collectors_ ABSL_GUARDED_BY(mu_);
  // Cells of kGlobal gauges.
  stats_internal::CellArena global_cells_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<StatsShard> shared_shard_;
};

// The cells one thread records into. Created by StatsRegistry::CreateShard; see the top of this
// file for threading rules. Methods take the registry's mutex; handles they return do not.
class StatsShard {
 public:
  ~StatsShard();
  StatsShard(const StatsShard&) = delete;
  StatsShard& operator=(const StatsShard&) = delete;

  // Handles for registered series. Cells are allocated on first use, so a shard only pays for the
  // series its thread touches. CHECK-fails on a default id or one naming another type.
  Counter Get(CounterId id);
  Gauge Get(GaugeId id);
  Histogram Get(HistogramId id);

  // Bytes of cells this shard holds, histograms' pages included (memory accounting; takes the
  // registry's mutex).
  size_t cell_bytes() const;
  // The registry the shard records for.
  StatsRegistry& registry() const { return *registry_; }

  // Register (or find) and get in one step.
  absl::StatusOr<Counter> RegisterCounter(absl::string_view name, absl::string_view help,
                                          const LabelSet& labels = {});
  absl::StatusOr<Gauge> RegisterGauge(absl::string_view name, absl::string_view help,
                                      const LabelSet& labels = {},
                                      GaugeMerge merge = GaugeMerge::kSum);
  absl::StatusOr<Histogram> RegisterHistogram(absl::string_view name, absl::string_view help,
                                              const LabelSet& labels = {},
                                              const HistogramOptions& options = {});

 private:
  friend class StatsRegistry;
  StatsShard(StatsRegistry* registry, bool shared) : registry_(registry), shared_(shared) {}

  // Requires registry_->mu_.
  stats_internal::Cell* CellsLocked(uint32_t series_index, size_t cell_count);
  stats_internal::Cell* FindCellsLocked(uint32_t series_index) const;

  StatsRegistry* const registry_;
  const bool shared_;
  // Guarded by registry_->mu_ (written at Get, read by registry merges).
  std::vector<stats_internal::Cell*> cells_by_series_;
  stats_internal::CellArena arena_;
};

}  // namespace meshlet
