#include "host/memory/tier_store.h"

#include "cuda/runtime.h"
#include "io/error.h"

namespace fi {

namespace {

std::unique_ptr<cuda::PinnedBuffer> pinned(uint64_t bytes) {
  return bytes > 0 ? std::make_unique<cuda::PinnedBuffer>(bytes) : nullptr;
}

}  // namespace

TierStore::TierStore(const Model& model, TierPlan plan, int device, const ReaderOptions& io)
    : plan_(std::move(plan)), kv_rows_(model.kv_rows()), kv_dim_(model.config().kv_dim()) {
  const ModelConfig& config = model.config();
  if (plan_.units.size() != static_cast<size_t>(config.n_layers) + 1)
    fail("internal: the tier plan has %zu units for %lld layers", plan_.units.size(), static_cast<long long>(config.n_layers));
  first_cpu_layer_ = config.n_layers - plan_.cpu_layers();
  for (int64_t l = 0; l < config.n_layers; ++l)
    if ((plan_.units[static_cast<size_t>(l)].decode == ComputeDevice::Cpu) != (l >= first_cpu_layer_))
      fail("internal: the CPU-decoded layers are not one block at the end of the stack");
  cuda::use_device(device);
  host_weights_ = pinned(plan_.host_weight_bytes);
  kv_cache_ = pinned(kv_cache_layer_bytes(config, kv_rows_) * static_cast<uint64_t>(config.n_layers - first_cpu_layer_));

  // The CPU's views of the layers it decodes: host rows in place, disk rows in the staging slot,
  // the small tensors (norms, biases) read once.
  const GgufFile& file = model.file();
  const ModelTensors& tensors = model.tensors();
  weights_.layers.resize(static_cast<size_t>(config.n_layers));
  cpu_views_.resize(plan_.units.size());
  for (int64_t l = first_cpu_layer_; l < config.n_layers; ++l) {
    TensorViews& layer = weights_.layers[static_cast<size_t>(l)];
    for (size_t r = 0; r < kRoleCount; ++r) {
      const auto role = static_cast<Role>(r);
      const TensorInfo* tensor = is_layer_role(role) ? tensors.layer(l, role) : nullptr;
      if (!tensor || role_spec(role).matrix) continue;
      small_tensors_.push_back(read_f32_tensor(file, *tensor));
      layer[role] = matrix_shape(*tensor);
      layer[role].data = reinterpret_cast<const uint8_t*>(small_tensors_.back().data());
    }
    for (const TierMatrix& m : plan_.units[static_cast<size_t>(l)].matrices) {
      if (m.gpu_rows > 0) fail("internal: %s decodes on the CPU but has rows in VRAM", m.tensor->name.c_str());
      WeightMatrix* matrix = &layer[tensors.locate(m.tensor).role];
      *matrix = matrix_shape(*m.tensor);
      matrix->rows = static_cast<int64_t>(m.rows);
      matrix->data = host_rows(m);
      matrix->split_row = static_cast<int64_t>(m.host_rows);
      cpu_views_[static_cast<size_t>(l)].push_back({matrix, &m});
    }
  }

  std::vector<std::vector<ReadSpan>> schedule;
  std::vector<std::string> names;
  for (const TierUnit& unit : plan_.units) {
    schedule_index_.push_back(unit.reads.empty() ? -1 : static_cast<int64_t>(schedule.size()));
    if (unit.reads.empty()) continue;
    schedule.push_back(unit.reads);
    names.push_back(unit.name);
  }
  if (!schedule.empty()) {
    staging_ = pinned(static_cast<uint64_t>(plan_.host_slots) * plan_.host_slot_bytes);
    reader_ = AsyncReader::open(file.path(), io);
    reader_->register_memory({staging_->data(), staging_->size()});
    prefetcher_ = std::make_unique<Prefetcher>(*reader_, std::move(schedule), names, staging_->data(),
                                               plan_.host_slot_bytes, plan_.host_slots);
  }
}

TierStore::~TierStore() = default;

uint8_t* TierStore::host_rows(const TierMatrix& m) const {
  return host_weights_ ? host_weights_->data() + m.host_offset : nullptr;
}

HostKvCache TierStore::kv_cache() const {
  return {kv_cache_ ? reinterpret_cast<uint16_t*>(kv_cache_->data()) : nullptr, first_cpu_layer_, kv_rows_, kv_dim_};
}

void TierStore::acquire(int64_t unit) {
  const int64_t index = schedule_index_.at(static_cast<size_t>(unit));
  staged_ = index >= 0 ? prefetcher_->acquire(static_cast<size_t>(index)) : nullptr;
  for (const CpuView& view : cpu_views_[static_cast<size_t>(unit)])
    view.matrix->tail = view.planned->disk_bytes() > 0 ? staged_ + view.planned->disk_offset : nullptr;
}

void TierStore::release(int64_t unit) {
  if (schedule_index_.at(static_cast<size_t>(unit)) >= 0) prefetcher_->release();
  staged_ = nullptr;
}

void TierStore::abandon_pass() {
  if (prefetcher_) prefetcher_->abandon();
  staged_ = nullptr;
}

void TierStore::embed(int32_t, float*) { fail("internal: the token embedding is on the GPU in a three-tier placement"); }

void TierStore::set_trace(Trace* trace) {
  if (prefetcher_) prefetcher_->set_trace(trace);
}

}  // namespace fi
