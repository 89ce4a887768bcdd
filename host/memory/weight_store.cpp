#include "host/memory/weight_store.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>

#include "host/kernels/quant.h"
#include "host/kernels/repack.h"
#include "io/error.h"
#include "io/log.h"
#include "planner/budget.h"

namespace fi {

WeightStore::WeightStore(const GgufFile& file, const ModelTensors& tensors, const Plan& plan, HostArena& arena,
                         ThreadPool& pool, const ReaderOptions& io, const ExpertCacheOptions& experts)
    : pool_(pool) {
  const int64_t layers = tensors.layer_count();
  if (plan.units.size() != static_cast<size_t>(layers) + 1)
    fail("internal: the plan has %zu units for %lld layers", plan.units.size(), static_cast<long long>(layers));
  reader_ = AsyncReader::open(file.path(), io);

  weights_.layers.resize(static_cast<size_t>(layers));
  embedding_info_ = tensors.global(Role::TokenEmbedding);
  weights_.globals[Role::TokenEmbedding] = matrix_shape(*embedding_info_);

  // Which view each planned matrix fills: its role's, or the output head's for the last unit
  // (the embedding's tensor when tied).
  targets_.resize(plan.units.size());
  for (size_t u = 0; u < plan.units.size(); ++u) {
    const bool output_unit = u == plan.units.size() - 1;
    for (const PlanMatrix& pm : plan.units[u].matrices) {
      const NamedRole named = tensors.locate(pm.tensor);
      WeightMatrix* matrix = output_unit ? &weights_.globals[Role::Output] : &weights_.at(named.role, named.layer);
      *matrix = matrix_shape(*pm.tensor);
      // The embedding (a tied output) is also read by row in the file's layout. A stacked tensor's
      // experts are sliced at whole groups: each slice's rows (shape[1]) must fill them.
      const bool interleave = interleaves(pm.tensor->type) && pm.tensor->shape[1] % kInterleavedRows == 0 &&
                              pm.tensor != embedding_info_;
      targets_[u].push_back({matrix, &pm, interleave});
    }
  }
  // An empty head unit: the head computes on another device.
  const std::vector<PlanMatrix>& head = plan.units.back().matrices;
  if (!head.empty() && tensors.tied_output() != (head.front().tensor == embedding_info_))
    fail("internal: the plan's output head does not match the model");

  load_resident(plan, tensors, arena);

  // Embedding rows not resident are read on demand into a small aligned buffer.
  const WeightMatrix& embedding = weights_.globals[Role::TokenEmbedding];
  embedding_buffer_bytes_ = align_up(embedding.row_bytes, kDirectAlignment) + kDirectAlignment;
  if (embedding_resident_rows_ < embedding.rows) {
    embedding_file_ = std::make_unique<DirectFile>(file.path(), reader_->direct());
    embedding_buffer_ = arena.allocate(embedding_buffer_bytes_, kDirectAlignment, "embedding row buffer");
  }

  if (plan.caches_experts())
    expert_cache_ = std::make_unique<ExpertCache>(file.path(), plan.expert_cache, arena, pool, io, experts);

  std::vector<std::vector<ReadSpan>> schedule;
  schedule_index_.assign(plan.units.size(), -1);
  for (size_t u = 0; u < plan.units.size(); ++u) {
    if (plan.units[u].reads.empty()) continue;
    schedule_index_[u] = static_cast<int64_t>(schedule.size());
    schedule.push_back(plan.units[u].reads);
  }
  bytes_after_load_ = reader_->bytes_read();
  if (!schedule.empty()) {
    uint8_t* slots = arena.allocate(plan.staging_bytes(), kDirectAlignment, "staging slots");
    reader_->register_memory({slots, static_cast<size_t>(plan.staging_bytes())});
    token_read_bytes_ = plan.read_bytes_per_token();
    std::vector<std::string> names;
    for (size_t u = 0; u < plan.units.size(); ++u)
      if (schedule_index_[u] >= 0) names.push_back(plan.units[u].name);
    prefetcher_ = std::make_unique<Prefetcher>(*reader_, std::move(schedule), names, slots, plan.slot_bytes, plan.depth);
  }
}

WeightStore::~WeightStore() = default;

void WeightStore::load_resident(const Plan& plan, const ModelTensors& tensors, HostArena& arena) {
  const auto start = std::chrono::steady_clock::now();
  // Each resident piece lands in the aligned span around it; `place` gets the first byte's address.
  std::vector<std::pair<uint8_t*, std::function<void(uint8_t*)>>> pieces;
  const uint64_t before = reader_->bytes_read();
  uint64_t requested = 0;
  auto read_piece = [&](uint64_t offset, uint64_t bytes, const char* what, std::function<void(uint8_t*)> place) {
    const uint64_t begin = align_down(offset, kDirectAlignment);
    const uint64_t length = align_up(offset + bytes, kDirectAlignment) - begin;
    uint8_t* span = arena.allocate(length, kDirectAlignment, what);
    reader_->submit({span, begin, length, pieces.size()});
    requested += length;
    pieces.emplace_back(span + (offset - begin), std::move(place));
  };

  // Norms, biases and other small tensors (and, without a budget, the embedding) land in their
  // role's view whole.
  for (const TensorInfo* tensor : plan.always_resident) {
    const NamedRole named = tensors.locate(tensor);
    WeightMatrix* view = &weights_.at(named.role, named.layer);
    *view = matrix_shape(*tensor);
    read_piece(tensor->file_offset, tensor->bytes, "resident tensors", [view](uint8_t* p) { view->data = p; });
  }
  for (auto& unit_targets : targets_)
    for (const Target& target : unit_targets) {
      if (target.plan->resident_rows == 0) continue;
      read_piece(target.plan->tensor->file_offset, target.plan->resident_bytes(), "resident weights",
                 [this, target](uint8_t* p) {
                   target.matrix->data = p;
                   if (target.plan->resident_rows < target.plan->rows) target.matrix->split_row = static_cast<int64_t>(target.plan->resident_rows);
                   if (target.interleave) {
                     interleave_rows(pool_, target.matrix->type, target.matrix->cols,
                                     static_cast<int64_t>(target.plan->resident_rows), p);
                     target.matrix->interleaved = true;
                   }
                 });
    }
  // A progress line on a terminal: big models take a while to read.
  auto last_shown = std::chrono::steady_clock::now();
  while (reader_->outstanding() > 0) {
    reader_->wait();
    if (std::chrono::steady_clock::now() - last_shown > std::chrono::milliseconds(200)) {
      last_shown = std::chrono::steady_clock::now();
      const uint64_t done = reader_->bytes_read() - before;
      log_progress(strprintf("loading weights %d%% (%s of %s)", static_cast<int>(100 * done / std::max<uint64_t>(requested, 1)),
                             format_bytes(done).c_str(), format_bytes(requested).c_str()));
    }
  }
  end_progress();
  load_read_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (auto& [address, place] : pieces) place(address);

  // Resident rows of a tied output are also embedding rows.
  WeightMatrix& embedding = weights_.globals[Role::TokenEmbedding];
  if (weights_.globals[Role::Output].data && plan.units.back().matrices[0].tensor == embedding_info_) {
    embedding.data = weights_.globals[Role::Output].data;
    embedding_resident_rows_ = static_cast<int64_t>(plan.units.back().matrices[0].resident_rows);
  } else if (embedding.data) {
    embedding_resident_rows_ = embedding.rows;
  }
}

void WeightStore::set_trace(Trace* trace) {
  if (prefetcher_) prefetcher_->set_trace(trace);
  if (expert_cache_) expert_cache_->set_trace(trace);
}

void WeightStore::use_experts(int64_t layer, std::span<const int32_t> experts, bool predictable, const ExpertUse& use) {
  if (expert_cache_) return expert_cache_->use(layer, experts, predictable, use);
  HostWeights::use_experts(layer, experts, predictable, use);
}

void WeightStore::expect_experts(int64_t layer, std::span<const int32_t> experts) {
  if (expert_cache_) expert_cache_->expect(layer, experts);
}

const WeightMatrix* WeightStore::lasting(int64_t layer, Role role) const {
  const WeightMatrix& w = weights_.at(role, layer);
  for (const Target& target : targets_.at(static_cast<size_t>(layer)))
    if (target.matrix == &w && target.plan->streamed_bytes() > 0) return nullptr;
  return w.data ? &w : nullptr;
}

void WeightStore::acquire(int64_t unit) {
  const int64_t index = schedule_index_.at(static_cast<size_t>(unit));
  if (index < 0) return;
  uint8_t* slot = prefetcher_->acquire(static_cast<size_t>(index));
  for (const Target& target : targets_[static_cast<size_t>(unit)]) {
    const PlanMatrix& pm = *target.plan;
    if (pm.streamed_bytes() == 0) continue;
    uint8_t* streamed = slot + pm.slot_offset;
    if (target.interleave)
      interleave_rows(pool_, target.matrix->type, target.matrix->cols, static_cast<int64_t>(pm.rows - pm.resident_rows),
                      streamed);
    if (pm.resident_rows == 0) target.matrix->data = streamed;
    else target.matrix->tail = streamed;
    target.matrix->interleaved = target.interleave;
  }
}

void WeightStore::release(int64_t unit) {
  if (schedule_index_.at(static_cast<size_t>(unit)) >= 0) prefetcher_->release();
}

void WeightStore::abandon_pass() {
  if (prefetcher_) prefetcher_->abandon();
}

void WeightStore::embed(int32_t token, float* out) {
  const WeightMatrix& e = weights_.globals[Role::TokenEmbedding];
  if (token < embedding_resident_rows_) {
    dequantize_row(e.type, e.data + static_cast<uint64_t>(token) * e.row_bytes, out, e.cols);
    return;
  }
  const uint64_t offset = embedding_info_->file_offset + static_cast<uint64_t>(token) * e.row_bytes;
  const uint64_t begin = align_down(offset, kDirectAlignment);
  embedding_file_->read(embedding_buffer_, begin, align_up(offset + e.row_bytes, kDirectAlignment) - begin);
  dequantize_row(e.type, embedding_buffer_ + (offset - begin), out, e.cols);
}

double WeightStore::stream_only_GBps(uint64_t bytes) {
  if (!prefetcher_) return 0.0;
  const uint64_t tokens = std::max<uint64_t>(1, (bytes + token_read_bytes_ - 1) / token_read_bytes_);
  auto stream = [&](uint64_t count) {
    for (uint64_t t = 0; t < count; ++t)
      for (size_t unit = 0; unit < prefetcher_->schedule_size(); ++unit) {
        prefetcher_->acquire(unit);
        prefetcher_->release();
      }
  };
  stream(1);
  const auto start = std::chrono::steady_clock::now();
  stream(tokens);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(tokens * token_read_bytes_) / seconds / 1e9;
}

uint64_t WeightStore::streamed_bytes_read() const { return reader_->bytes_read() - bytes_after_load_; }

}  // namespace fi
