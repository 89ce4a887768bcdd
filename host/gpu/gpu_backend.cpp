#include "host/gpu/gpu_backend.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <optional>
#include <unordered_map>

#include "cuda/blas.h"
#include "cuda/device_info.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "host/kernels/repack.h"
#include "host/kernels/routing.h"
#include "host/kernels/thread_pool.h"
#include "host/memory/expert_assist.h"
#include "host/memory/kv_cache.h"
#include "host/memory/tier_store.h"
#include "host/trace/trace.h"
#include "io/direct_file.h"
#include "io/error.h"
#include "planner/budget.h"

namespace fi {

namespace {

constexpr uint64_t kUploadBufferBytes = kGpuLoadBufferBytes / 2;
constexpr int kUploadBuffers = 2;  // one filling from the file while the other uploads

// A unit's tensors on the device by role; vectors are one-row F32 matrices.
struct DeviceViews {
  std::array<cuda::DeviceMatrix, kRoleCount> by_role;
  cuda::DeviceMatrix& operator[](Role role) { return by_role[index_of(role)]; }
  const cuda::DeviceMatrix& operator[](Role role) const { return by_role[index_of(role)]; }
};

class GpuBackend final : public Backend, public ExpertAssist {
 public:
  // tiers: null keeps every weight on the device. A three-tier placement keeps its GPU rows
  // resident and uploads the rest of each unit the GPU computes, from pinned host memory and
  // through pinned staging slots from disk, into a device slot before computing it. Layers that
  // decode on the CPU come here only to prefill: their KV cache lives in host memory and visits
  // a device buffer meanwhile.
  GpuBackend(const Model& model, const GpuMemoryPlan& plan, const GpuOptions& options);

  const char* device_name() const override { return "gpu"; }
  void begin_batch(std::span<const int32_t> tokens, std::span<const BatchRun> runs) override;
  void embed(std::span<const int32_t> tokens) override;
  void load_residual(const float* host) override;
  void store_residual(float* host) override;
  void begin_unit(int64_t unit) override;
  void end_unit(int64_t unit) override;
  void abandon_batch() override;
  void rms_norm(Activation in, Role weight, Activation out) override;
  void rms_norm_heads(Activation x, Role weight) override;
  void multiply(Activation in, std::initializer_list<Product> products) override;
  void add_bias(Activation x, Role bias) override;
  void rope_and_store_kv(int64_t layer) override;
  void attention(int64_t layer) override;
  void swiglu(Activation gate, Activation up) override;
  void route(Activation logits) override;
  void experts_ffn(Activation in) override;
  void keep_rows(std::span<const int64_t> rows) override;
  void output_logits(Activation in, float* logits) override;
  void set_trace(Trace* trace) override;
  ExpertAssist* expert_assist() override { return expert_slots_.empty() ? nullptr : this; }

  // The cache of experts beside experts on the CPU (ExpertAssist).
  void begin_layer(int64_t layer, const float* x, int64_t tokens, std::span<const int32_t> chosen,
                   const BatchRouting& routing) override;
  bool holds(int32_t expert) const override { return expert_role_[static_cast<size_t>(expert)] == ExpertRole::Held; }
  bool caches(int64_t layer, int32_t expert) const override {
    return slot_of_key_[static_cast<size_t>(layer * config_.n_experts + expert)] >= 0;
  }
  bool receive(int32_t expert, const ExpertWeights& weights) override;
  void finish_layer(const std::function<void(int32_t choice, const float* result)>& each) override;
  ExpertAssistStats stats() const override { return assist_stats_; }
  int64_t slots() const override { return static_cast<int64_t>(expert_slots_.size()); }

 private:
  // A span timed by two CUDA events on one stream; resolved once the compute stream has synchronised.
  struct TimedSpan {
    Trace::Track track;
    std::string name;
    std::unique_ptr<cuda::Event> start, end;
  };
  void begin_span(Trace::Track track, const std::string& name, const cuda::Stream& stream);
  void end_span(const cuda::Stream& stream);
  void resolve_spans();
  // A file range and where it goes: device memory, or pinned host memory.
  struct Piece {
    uint64_t begin, end;
    uint8_t* destination;
    bool device;
  };
  void load(const std::string& path, std::vector<Piece> pieces);
  void place_weights(const Model& model);
  // Uploads unit `unit`'s streamed rows into a device slot (a no-op for a resident unit); the
  // compute stream waits for them only when it is about to use them; the slot is handed back once
  // the compute stream has used it.
  void bring(size_t unit);
  void wait_for_upload(size_t unit);
  void done_with(size_t unit);
  // The next pass starts with layer 0 on the GPU (prefill, or decode unless every layer decodes on
  // the CPU): its upload goes out as soon as this pass's last unit is enqueued, so that it overlaps
  // the head's compute and the caller's sampling instead of following them.
  void bring_next_first_layer();
  struct DeviceProduct {
    const cuda::DeviceMatrix* w = nullptr;
    float* y = nullptr;
    bool accumulate = false;
  };
  static constexpr size_t kMaxProducts = 4;  // of one input
  // y = w x (y += w x with accumulate) for each product, all of the same input x of `cols` floats
  // per token, for n tokens.
  void multiply(const float* x, int64_t cols, std::span<const DeviceProduct> products, int64_t n);
  // One expert's feed-forward network for the m rows of x listed in `rows` (device memory): out
  // (m x dim) = down(silu(gate · x) * up · x), w = its gate, up and down slices.
  void expert_products(const float* x, const int32_t* rows, int64_t m, const std::array<cuda::DeviceMatrix, 3>& w,
                       float* out);
  float* buffer(Activation activation) const;
  const cuda::DeviceMatrix& weight(Role role) const { return is_layer_role(role) ? layers_[static_cast<size_t>(unit_)][role] : globals_[role]; }
  const float* vector(Role role) const { return reinterpret_cast<const float*>(weight(role).data); }
  // A layer's keys, then its values: in the device cache for GPU-decoded layers, in the visiting
  // buffer for the others.
  uint16_t* key_cache(int64_t layer) const {
    return layer < first_cpu_layer_ ? kv_cache_ + layer * 2 * kv_rows_ * config_.kv_dim() : visiting_kv_;
  }
  uint16_t* value_cache(int64_t layer) const { return key_cache(layer) + kv_rows_ * config_.kv_dim(); }
  // Moves rows [first, first + count) of a CPU-decoded layer's keys and values between its host
  // cache and the visiting buffer.
  void visit_kv(int64_t layer, int64_t first, int64_t count, bool to_device);

  const ModelConfig& config_;
  // The current device is per host thread, and passes may come from another thread than the one
  // that made this backend (serve's batcher): each pass makes it current.
  int device_;
  int64_t kv_rows_;
  int64_t max_batch_;
  cuda::AttentionShape shape_;
  cuda::Stream compute_;
  cuda::Stream upload_;
  std::unique_ptr<cuda::DeviceArena> arena_;
  std::unique_ptr<cuda::Blas> blas_;

  DeviceViews globals_;  // Output: the output head's matrix (the embedding's rows when tied)
  std::vector<DeviceViews> layers_;
  const double* inverse_frequencies_ = nullptr;
  uint16_t* kv_cache_ = nullptr;
  int64_t first_cpu_layer_ = 0;  // layers from here on decode on the CPU
  uint16_t* visiting_kv_ = nullptr;
  HostKvCache host_kv_;
  int32_t* tokens_device_ = nullptr;
  cuda::TokenPlace* places_device_ = nullptr;
  std::vector<cuda::TokenPlace> places_;
  std::vector<BatchRun> runs_;
  std::array<float*, kActivationCount> buffers_{};
  float* logits_ = nullptr;
  uint16_t* half_inputs_ = nullptr;
  uint16_t* dequantized_ = nullptr;
  uint64_t dequantized_elements_ = 0;
  int64_t tokens_ = 0;
  int64_t unit_ = 0;
  bool logits_pending_ = false;  // copied to the host on the compute stream, not yet waited for
  std::optional<cuda::NvtxRange> unit_range_;

  // Streaming (three tiers only).
  TierStore* tiers_ = nullptr;
  std::vector<std::vector<cuda::DeviceMatrix*>> unit_matrices_;  // per plan unit, in the plan's matrix order
  std::vector<uint8_t*> device_slots_;
  std::vector<std::unique_ptr<cuda::Event>> slot_uploaded_, slot_free_;
  size_t next_slot_ = 0;
  std::vector<int> unit_slot_;  // per unit: the device slot it occupies, or -1
  bool first_layer_brought_ = false;  // by the previous pass
  std::vector<std::string> upload_names_;  // per unit, for NVTX and the trace

  // Mixture of experts with every expert resident: the batch's routing (made on the host, as the
  // CPU routes), its choices' indices and weights on the device, and the products' scratch.
  GpuExperts experts_;
  std::vector<const TensorInfo*> tensors_;  // what the device holds
  BatchRouting routing_;
  std::vector<float> router_logits_;
  std::vector<int32_t> choice_tokens_;  // per entry of routing_.by_expert: its token's row
  int32_t* by_expert_device_ = nullptr;
  int32_t* choice_tokens_device_ = nullptr;
  float* weights_device_ = nullptr;
  float* expert_input_ = nullptr;   // [token of the expert][dim]
  float* expert_output_ = nullptr;  // [token of the expert][dim]
  float* choice_rows_ = nullptr;    // [token][choice][dim]

  // The expert cache (OnCpu with VRAM to spare). A chosen expert is held (computes here), uploaded
  // to compute here (faster than the CPU for its tokens), copied (the CPU computes it; the copy
  // serves later uses), or left to the CPU. Uploads run on the upload stream; a slot's events order
  // them against the products that read it.
  enum class ExpertRole : uint8_t { Host, Held, Upload, Copy };
  struct ExpertSlot {
    uint8_t* memory = nullptr;
    int64_t key = -1;  // layer * n_experts + expert once its weights are up, or -1
    uint64_t last_use = 0;
    std::unique_ptr<cuda::Event> ready;  // its last upload is in
    std::unique_ptr<cuda::Event> free;   // its last product has read it
  };
  void place_expert_cache(const Model& model, const GpuOptions& options);
  // A slot to fill, not used by this layer: an empty one, else the least frequently chosen expert's
  // (the least recently used among equals); -1 when every slot serves this layer.
  int64_t expert_victim() const;
  bool upload_pays(int64_t layer, int64_t tokens) const;
  void upload_expert(int32_t expert, const ExpertWeights& weights, ExpertSlot& slot);
  void copy_to_staging(uint8_t* to, const uint8_t* from, uint64_t bytes) const;
  void compute_expert(int32_t expert, ExpertSlot& slot);
  std::vector<ExpertSlot> expert_slots_;
  // Where an upload the cache should not keep computes from: when every free slot holds an expert
  // chosen more often than the one uploaded.
  ExpertSlot passing_;
  std::vector<int64_t> slot_of_key_;     // per key: its slot, or -1
  std::vector<uint32_t> key_frequency_;  // per key: times chosen, halved every kFrequencyAging uses
  static constexpr uint64_t kFrequencyAging = 1 << 16;
  uint64_t uses_since_aging_ = 0;
  uint64_t expert_clock_ = 0;  // layers begun
  std::vector<uint64_t> slot_busy_;  // per slot: the clock of the last layer it serves
  std::vector<ExpertRole> expert_role_;  // per expert of the current layer
  std::vector<ExpertSlot*> expert_target_;  // per expert of the current layer: the slot it computes from, or null
  std::vector<std::array<cuda::DeviceMatrix, 3>> expert_views_;  // per layer: gate, up, down of a slot at offset 0
  std::vector<std::array<uint64_t, 4>> slot_layout_;  // per layer
  std::vector<uint64_t> expert_bytes_;                // per layer: one expert's bytes
  std::array<const uint16_t*, kTensorTypeCount> layout_offsets_{};  // interleaved types' permutations, by kTensorTypes index
  const uint16_t* layout_offsets(TensorType type) const {
    for (size_t i = 0; i < kTensorTypeCount; ++i)
      if (kTensorTypes[i] == type && layout_offsets_[i]) return layout_offsets_[i];
    fail("internal: no interleaved layout of %s on the GPU", type_name(type));
  }
  uint8_t* staging_device_ = nullptr;
  std::array<std::unique_ptr<cuda::PinnedBuffer>, 2> staging_host_;
  std::array<std::unique_ptr<cuda::Event>, 2> staging_free_;
  int next_staging_ = 0;
  std::unique_ptr<cuda::PinnedBuffer> results_host_;  // [result][dim]
  std::unique_ptr<cuda::PinnedBuffer> result_tokens_host_;
  float* results_device_ = nullptr;
  int32_t* result_tokens_device_ = nullptr;
  std::vector<int32_t> result_choices_;  // per result row: its choice
  int64_t assist_layer_ = 0;
  const BatchRouting* assist_routing_ = nullptr;
  const float* assist_input_ = nullptr;  // host memory, not uploaded yet this layer; null once it is
  int64_t assist_tokens_ = 0;
  double cpu_matvec_GBps_ = 0.0, h2d_GBps_ = 0.0, host_copy_GBps_ = 0.0;
  ThreadPool* copy_pool_ = nullptr;
  ExpertAssistStats assist_stats_;

  std::vector<std::string> unit_names_;  // "layer N", "output head": made once, not per token
  // Tracing.
  std::unique_ptr<cuda::Event> trace_origin_;  // completed at trace_origin_us_ on the trace's clock
  double trace_origin_us_ = 0.0;
  std::vector<TimedSpan> spans_;
};

GpuBackend::GpuBackend(const Model& model, const GpuMemoryPlan& plan, const GpuOptions& options)
    : config_(model.config()), device_(options.device), kv_rows_(model.kv_rows()), max_batch_(model.max_batch()), tiers_(options.tiers),
      experts_(options.experts), tensors_(gpu_tensors(model, options.experts)) {
  const ModelConfig& c = config_;
  shape_ = {c.n_heads, c.n_kv_heads, c.head_dim, c.rope_dim, c.arch->rope_style == RopeStyle::Neox,
            c.attention_scale > 0.0 ? static_cast<float>(c.attention_scale)
                                    : static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)))};
  arena_ = std::make_unique<cuda::DeviceArena>(tiers_ ? tiers_->plan().gpu_used()
                                                      : plan.total() + options.expert_cache.total());
  cuda::DeviceArena& arena = *arena_;
  blas_ = std::make_unique<cuda::Blas>(compute_, arena.allocate(plan.blas_workspace, "cuBLAS workspace"),
                                       plan.blas_workspace);

  place_weights(model);

  first_cpu_layer_ = tiers_ ? tiers_->first_cpu_layer() : c.n_layers;
  const uint64_t layer_kv_bytes = kv_cache_layer_bytes(c, kv_rows_);
  kv_cache_ = static_cast<uint16_t*>(arena.allocate(layer_kv_bytes * static_cast<uint64_t>(first_cpu_layer_), "KV cache"));
  if (first_cpu_layer_ < c.n_layers) {
    visiting_kv_ = static_cast<uint16_t*>(arena.allocate(layer_kv_bytes, "KV cache visiting from the host"));
    host_kv_ = tiers_->kv_cache();
  }
  const auto batch = static_cast<uint64_t>(max_batch_);
  for (size_t a = 0; a < kActivationCount; ++a)
    buffers_[a] = arena.allocate_array<float>(
        batch * static_cast<uint64_t>(activation_width(static_cast<Activation>(a), c)), "activations");
  logits_ = arena.allocate_array<float>(batch * static_cast<uint64_t>(c.vocab), "logits");
  tokens_device_ = arena.allocate_array<int32_t>(batch, "tokens");
  static_assert(sizeof(cuda::TokenPlace) == kGpuTokenPlaceBytes);
  places_device_ = arena.allocate_array<cuda::TokenPlace>(batch, "token places");
  places_.reserve(batch);
  half_inputs_ = arena.allocate_array<uint16_t>(batch * static_cast<uint64_t>(gpu_widest_input(c)), "half inputs");
  dequantized_elements_ = gpu_dequantize_elements(tensors_);
  if (c.has_experts() && experts_ == GpuExperts::OnGpu) {
    const uint64_t choices = batch * static_cast<uint64_t>(c.n_experts_used), dim = static_cast<uint64_t>(c.dim);
    expert_input_ = arena.allocate_array<float>(batch * dim, "expert inputs");
    expert_output_ = arena.allocate_array<float>(batch * dim, "expert outputs");
    choice_rows_ = arena.allocate_array<float>(choices * dim, "expert results per choice");
    by_expert_device_ = arena.allocate_array<int32_t>(choices, "choices by expert");
    choice_tokens_device_ = arena.allocate_array<int32_t>(choices, "tokens of the choices");
    weights_device_ = arena.allocate_array<float>(choices, "routing weights");
    router_logits_.resize(static_cast<size_t>(batch * static_cast<uint64_t>(c.n_experts)));
  }
  if (options.expert_cache.slots > 0)  // the experts' products dequantize their rows too
    dequantized_elements_ = std::max(dequantized_elements_, gpu_dequantize_elements(gpu_tensors(model, GpuExperts::OnGpu)));
  dequantized_ = arena.allocate_array<uint16_t>(dequantized_elements_, "dequantized rows");
  if (options.expert_cache.slots > 0) place_expert_cache(model, options);

  const std::vector<double>& frequencies = model.inverse_frequencies();
  auto* device_frequencies = arena.allocate_array<double>(frequencies.size(), "RoPE frequencies");
  cuda::copy_to_device_async(device_frequencies, frequencies.data(), frequencies.size() * sizeof(double), compute_);
  inverse_frequencies_ = device_frequencies;
  compute_.synchronize();
}

void GpuBackend::load(const std::string& path, std::vector<Piece> pieces) {
  std::sort(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) { return a.begin < b.begin; });
  DirectFile file(path, true);
  std::vector<std::unique_ptr<cuda::PinnedBuffer>> buffers;
  std::vector<std::unique_ptr<cuda::Event>> uploaded;
  for (int i = 0; i < kUploadBuffers; ++i) {
    buffers.push_back(std::make_unique<cuda::PinnedBuffer>(kUploadBufferBytes));
    uploaded.push_back(std::make_unique<cuda::Event>());
    uploaded.back()->record(upload_);
  }
  int next = 0;
  for (const Piece& piece : pieces) {
    for (uint64_t offset = align_down(piece.begin, kDirectAlignment); offset < piece.end; offset += kUploadBufferBytes) {
      const uint64_t length = std::min(kUploadBufferBytes, align_up(piece.end, kDirectAlignment) - offset);
      uploaded[next]->synchronize();  // the buffer's previous upload has left it
      uint8_t* buffer = buffers[next]->data();
      file.read(buffer, offset, length);
      const uint64_t from = std::max(offset, piece.begin), to = std::min(offset + length, piece.end);
      if (piece.device)
        cuda::copy_to_device_async(piece.destination + (from - piece.begin), buffer + (from - offset), to - from, upload_);
      else
        std::memcpy(piece.destination + (from - piece.begin), buffer + (from - offset), to - from);
      uploaded[next]->record(upload_);
      next = (next + 1) % kUploadBuffers;
    }
  }
  upload_.synchronize();
}

void GpuBackend::place_weights(const Model& model) {
  cuda::NvtxRange range("upload weights");
  const ModelTensors& tensors = model.tensors();
  const TensorInfo* embedding = tensors.global(Role::TokenEmbedding);
  std::vector<Piece> pieces;
  std::unordered_map<const TensorInfo*, const uint8_t*> resident;  // device address of each tensor's first row
  auto to_device = [&](const TensorInfo* tensor, uint64_t bytes) {
    auto* destination = bytes ? static_cast<uint8_t*>(arena_->allocate(bytes, tensor->name.c_str())) : nullptr;
    if (bytes) pieces.push_back({tensor->file_offset, tensor->file_offset + bytes, destination, true});
    resident[tensor] = destination;
  };
  // The plan's matrices keep their GPU rows here; everything else the GPU needs is resident whole
  // (the embedding too: it embeds on the device).
  std::unordered_map<const TensorInfo*, const TierMatrix*> planned;
  if (tiers_)
    for (const TierUnit& unit : tiers_->plan().units)
      for (const TierMatrix& m : unit.matrices) planned[m.tensor] = &m;
  for (const TensorInfo* tensor : tensors_) {
    const auto found = planned.find(tensor);
    if (found == planned.end() || tensor == embedding) {
      to_device(tensor, tensor->bytes);
      continue;
    }
    const TierMatrix& m = *found->second;
    to_device(tensor, m.gpu_bytes());
    if (m.host_bytes() > 0) {
      const uint64_t first = tensor->file_offset + m.gpu_bytes();
      pieces.push_back({first, first + m.host_bytes(), tiers_->host_rows(m), false});
    }
  }
  load(model.file().path(), std::move(pieces));

  auto view = [&](const TensorInfo* info) {
    cuda::DeviceMatrix m{info->type, static_cast<int64_t>(info->rows()), static_cast<int64_t>(info->shape[0]),
                         row_bytes(info->type, info->shape[0]), resident.at(info)};
    if (const auto found = planned.find(info); found != planned.end() && found->second->gpu_rows < found->second->rows)
      m.split_row = static_cast<int64_t>(found->second->gpu_rows);  // the tail is set when the unit is brought in
    return m;
  };
  layers_.resize(static_cast<size_t>(config_.n_layers));
  std::unordered_map<const TensorInfo*, cuda::DeviceMatrix*> matrix_of;
  for (const TensorInfo* tensor : tensors_) {
    const NamedRole named = tensors.locate(tensor);
    cuda::DeviceMatrix& field = named.layer >= 0 ? layers_[static_cast<size_t>(named.layer)][named.role] : globals_[named.role];
    field = view(tensor);
    matrix_of[tensor] = &field;
  }
  globals_[Role::TokenEmbedding].split_row = 0;
  globals_[Role::Output] = view(&tensors.output());
  matrix_of[&tensors.output()] = &globals_[Role::Output];
  for (int64_t l = 0; l < config_.n_layers; ++l) unit_names_.push_back("layer " + std::to_string(l));
  unit_names_.push_back("output head");
  if (!tiers_) return;

  // Streaming: device slots fed by uploads from the host tier.
  const TierPlan& tier_plan = tiers_->plan();
  for (const TierUnit& unit : tier_plan.units) {
    upload_names_.push_back("upload " + unit.name);
    std::vector<cuda::DeviceMatrix*> matrices;
    for (const TierMatrix& m : unit.matrices) matrices.push_back(matrix_of.at(m.tensor));
    unit_matrices_.push_back(std::move(matrices));
  }
  unit_slot_.assign(tier_plan.units.size(), -1);
  for (int i = 0; i < (tier_plan.device_slot_bytes > 0 ? tier_plan.device_slots : 0); ++i) {
    device_slots_.push_back(static_cast<uint8_t*>(arena_->allocate(tier_plan.device_slot_bytes, "device staging slot")));
    slot_uploaded_.push_back(std::make_unique<cuda::Event>());
    slot_free_.push_back(std::make_unique<cuda::Event>());
    slot_free_.back()->record(compute_);
  }
}

void GpuBackend::set_trace(Trace* trace) {
  trace_ = trace;
  if (!trace) return;
  trace_origin_ = std::make_unique<cuda::Event>(true);
  trace_origin_->record(compute_);
  trace_origin_->synchronize();
  trace_origin_us_ = trace->microseconds(Trace::Clock::now());
  if (tiers_) tiers_->set_trace(trace);
}

void GpuBackend::begin_span(Trace::Track track, const std::string& name, const cuda::Stream& stream) {
  if (!trace_) return;
  spans_.push_back({track, name, std::make_unique<cuda::Event>(true), std::make_unique<cuda::Event>(true)});
  spans_.back().start->record(stream);
}

void GpuBackend::end_span(const cuda::Stream& stream) {
  if (trace_) spans_.back().end->record(stream);
}

void GpuBackend::resolve_spans() {
  if (!trace_) return;
  for (const TimedSpan& span : spans_) {
    span.end->synchronize();
    trace_->add_microseconds(span.track, span.name, trace_origin_us_ + 1e3 * span.start->milliseconds_since(*trace_origin_),
                             trace_origin_us_ + 1e3 * span.end->milliseconds_since(*trace_origin_));
  }
  spans_.clear();
}

void GpuBackend::bring(size_t unit) {
  if (!tiers_ || device_slots_.empty()) return;
  const TierUnit& planned = tiers_->plan().units[unit];
  if (planned.host_bytes() + planned.disk_bytes() == 0) return;
  const cuda::NvtxRange range(upload_names_[unit]);
  const size_t slot = next_slot_;
  next_slot_ = (next_slot_ + 1) % device_slots_.size();
  slot_free_[slot]->wait_on(upload_);  // the compute stream is done with the slot's last unit
  tiers_->acquire(static_cast<int64_t>(unit));
  const uint8_t* staged = tiers_->staged();
  begin_span(Trace::Track::Upload, upload_names_[unit], upload_);
  for (size_t i = 0; i < planned.matrices.size(); ++i) {
    const TierMatrix& m = planned.matrices[i];
    if (m.gpu_rows == m.rows) continue;
    uint8_t* destination = device_slots_[slot] + m.device_offset;
    if (m.host_bytes() > 0) cuda::copy_to_device_async(destination, tiers_->host_rows(m), m.host_bytes(), upload_);
    if (m.disk_bytes() > 0)
      cuda::copy_to_device_async(destination + m.host_bytes(), staged + m.disk_offset, m.disk_bytes(), upload_);
    unit_matrices_[unit][i]->tail = destination;
  }
  end_span(upload_);
  slot_uploaded_[slot]->record(upload_);
  if (staged) slot_uploaded_[slot]->synchronize();  // out of the staging slot before it is refilled
  tiers_->release(static_cast<int64_t>(unit));
  unit_slot_[unit] = static_cast<int>(slot);
}

void GpuBackend::abandon_batch() {
  // What the streams still hold of the failed pass ends first: uploads read the staging slots
  // that the store is about to forget.
  upload_.synchronize();
  compute_.synchronize();
  if (tiers_) tiers_->abandon_pass();
  std::fill(unit_slot_.begin(), unit_slot_.end(), -1);
  spans_.clear();  // a span the failure interrupted has no recorded end to time
  first_layer_brought_ = false;
  logits_pending_ = false;
  unit_range_.reset();
}

void GpuBackend::bring_next_first_layer() {
  if (!tiers_ || first_cpu_layer_ == 0) return;
  bring(0);
  first_layer_brought_ = true;
}

void GpuBackend::wait_for_upload(size_t unit) {
  if (!unit_slot_.empty() && unit_slot_[unit] >= 0) slot_uploaded_[static_cast<size_t>(unit_slot_[unit])]->wait_on(compute_);
}

void GpuBackend::done_with(size_t unit) {
  if (unit_slot_.empty() || unit_slot_[unit] < 0) return;
  slot_free_[static_cast<size_t>(unit_slot_[unit])]->record(compute_);
  unit_slot_[unit] = -1;
}

float* GpuBackend::buffer(Activation activation) const { return buffers_[static_cast<size_t>(activation)]; }

void GpuBackend::begin_batch(std::span<const int32_t> tokens, std::span<const BatchRun> runs) {
  cuda::use_device(device_);
  tokens_ = static_cast<int64_t>(tokens.size());
  runs_.assign(runs.begin(), runs.end());
  places_.clear();
  for (const BatchRun& run : runs)
    for (int64_t i = 0; i < run.count; ++i)
      places_.push_back({static_cast<int32_t>(run.position + i), static_cast<int32_t>(run.cache_begin)});
  if (static_cast<int64_t>(places_.size()) != tokens_)
    fail("internal: %zu run tokens for a batch of %lld", places_.size(), static_cast<long long>(tokens_));
  cuda::copy_to_device_async(places_device_, places_.data(), places_.size() * sizeof(cuda::TokenPlace), compute_);
}

void GpuBackend::embed(std::span<const int32_t> tokens) {
  cuda::copy_to_device_async(tokens_device_, tokens.data(), tokens.size_bytes(), compute_);
  cuda::embed(globals_[Role::TokenEmbedding], tokens_device_, tokens_, buffer(Activation::Residual), compute_);
}

void GpuBackend::load_residual(const float* host) {
  cuda::copy_to_device_async(buffer(Activation::Residual), host, static_cast<uint64_t>(tokens_ * config_.dim) * sizeof(float),
                             compute_);
}

void GpuBackend::store_residual(float* host) {
  cuda::copy_to_host_async(host, buffer(Activation::Residual), static_cast<uint64_t>(tokens_ * config_.dim) * sizeof(float),
                           compute_);
  compute_.synchronize();
  resolve_spans();
}

void GpuBackend::begin_unit(int64_t unit) {
  unit_ = unit;
  const auto index = static_cast<size_t>(unit);
  if (unit == 0 && first_layer_brought_) first_layer_brought_ = false;
  else bring(index);
  wait_for_upload(index);
  unit_range_.emplace(unit_names_[index]);
  begin_span(Trace::Track::Gpu, unit_names_[index], compute_);
  // A CPU-decoded layer prefilling here: each sequence's earlier positions come up from its host
  // cache.
  if (unit < config_.n_layers && unit >= first_cpu_layer_)
    for (const BatchRun& run : runs_) visit_kv(unit, run.cache_begin, run.position, true);
}

void GpuBackend::end_unit(int64_t unit) {
  // The new positions go back (the CPU reads them after a synchronisation).
  if (unit < config_.n_layers && unit >= first_cpu_layer_)
    for (const BatchRun& run : runs_) visit_kv(unit, run.cache_begin + run.position, run.count, false);
  end_span(compute_);
  done_with(static_cast<size_t>(unit));
  unit_range_.reset();
  if (unit < config_.n_layers) return;
  bring_next_first_layer();
  if (logits_pending_) {
    compute_.synchronize();
    resolve_spans();
    logits_pending_ = false;
  }
}

// Short batches (decode) read each weight once per token batch with the matrix-vector kernels;
// longer ones go through cuBLAS on half-precision inputs (converted once for all the products of
// one input; FP32 accumulation), a fixed number of rows at a time dequantized (or copied, for F16)
// into one buffer: the products then have the same shapes wherever the rows live, so every
// placement gives the same bits.
void GpuBackend::multiply(const float* x, int64_t cols, std::span<const DeviceProduct> products, int64_t n) {
  if (n <= cuda::kMaxMatvecTokens) {
    for (const DeviceProduct& p : products) cuda::matvec(*p.w, x, n, p.y, compute_, p.accumulate);
    return;
  }
  cuda::floats_to_half(x, n * cols, half_inputs_, compute_);
  for (const DeviceProduct& p : products) {
    const cuda::DeviceMatrix& w = *p.w;
    const int64_t chunk_rows = std::max<int64_t>(1, static_cast<int64_t>(dequantized_elements_) / w.cols);
    for (int64_t first = 0; first < w.rows; first += chunk_rows) {
      const int64_t rows = std::min(chunk_rows, w.rows - first);
      cuda::dequantize_to_half(w, first, rows, dequantized_, compute_);
      blas_->gemm(dequantized_, rows, w.cols, half_inputs_, n, p.y + first, w.rows, p.accumulate);
    }
  }
}

void GpuBackend::multiply(Activation in, std::initializer_list<Product> products) {
  if (products.size() > kMaxProducts) fail("internal: %zu products of one input", products.size());
  std::array<DeviceProduct, kMaxProducts> device_products;
  size_t count = 0;
  for (const Product& p : products) device_products[count++] = {&weight(p.weight), buffer(p.out), p.accumulate};
  multiply(buffer(in), activation_width(in, config_), std::span<const DeviceProduct>(device_products.data(), count), tokens_);
}

void GpuBackend::rms_norm(Activation in, Role weight_role, Activation out) {
  cuda::rms_norm(buffer(in), vector(weight_role), buffer(out), tokens_, activation_width(in, config_), config_.rms_eps,
                 compute_);
}

void GpuBackend::rms_norm_heads(Activation x, Role weight_role) {
  const int64_t heads = tokens_ * activation_width(x, config_) / config_.head_dim;
  cuda::rms_norm(buffer(x), vector(weight_role), buffer(x), heads, config_.head_dim, config_.rms_eps, compute_);
}

void GpuBackend::add_bias(Activation x, Role bias) {
  cuda::add_bias(buffer(x), vector(bias), tokens_, activation_width(x, config_), compute_);
}

void GpuBackend::rope_and_store_kv(int64_t layer) {
  cuda::rope_and_store_kv(buffer(Activation::Query), buffer(Activation::Key), buffer(Activation::Value), tokens_, places_device_,
                          inverse_frequencies_, shape_, key_cache(layer), value_cache(layer), compute_);
}

void GpuBackend::attention(int64_t layer) {
  cuda::attention(buffer(Activation::Query), key_cache(layer), value_cache(layer), tokens_, places_device_, shape_,
                  buffer(Activation::Attended), compute_);
}

void GpuBackend::swiglu(Activation gate, Activation up) {
  cuda::swiglu(buffer(gate), buffer(up), tokens_ * activation_width(gate, config_), compute_);
}

// The router's logits come to the host and route there, with the CPU's code: the same choices as
// the CPU would make from the same logits (llama.cpp's ties included). A few floats per token; the
// wait is the price of knowing which experts to multiply.
void GpuBackend::route(Activation logits) {
  const ModelConfig& c = config_;
  const auto count = static_cast<uint64_t>(tokens_ * c.n_experts);
  cuda::copy_to_host_async(router_logits_.data(), buffer(logits), count * sizeof(float), compute_);
  compute_.synchronize();
  routing_.route(router_logits_.data(), tokens_, c.n_experts, c.n_experts_used);
  choice_tokens_.clear();
  for (int32_t choice : routing_.by_expert) choice_tokens_.push_back(choice / static_cast<int32_t>(c.n_experts_used));
  const uint64_t choices = routing_.by_expert.size();
  cuda::copy_to_device_async(by_expert_device_, routing_.by_expert.data(), choices * sizeof(int32_t), compute_);
  cuda::copy_to_device_async(choice_tokens_device_, choice_tokens_.data(), choices * sizeof(int32_t), compute_);
  cuda::copy_to_device_async(weights_device_, routing_.weight.data(), choices * sizeof(float), compute_);
}

// Each chosen expert once for the tokens that chose it: their rows gathered, its three slices of
// the stacked tensors multiplied, the results scattered to their choices' rows; then each token's
// choices added in order onto the residual stream.
void GpuBackend::expert_products(const float* x, const int32_t* rows, int64_t m,
                                 const std::array<cuda::DeviceMatrix, 3>& w, float* out) {
  const ModelConfig& c = config_;
  float* gate = buffer(Activation::Gate);
  float* up = buffer(Activation::Up);
  cuda::gather_rows(x, rows, m, c.dim, expert_input_, compute_);
  const std::array<DeviceProduct, 2> gate_up = {DeviceProduct{&w[0], gate}, DeviceProduct{&w[1], up}};
  multiply(expert_input_, c.dim, gate_up, m);
  cuda::swiglu(gate, up, m * c.expert_ffn_dim, compute_);
  const DeviceProduct down{&w[2], out};
  multiply(gate, c.expert_ffn_dim, std::span<const DeviceProduct>(&down, 1), m);
}

void GpuBackend::experts_ffn(Activation in) {
  const ModelConfig& c = config_;
  auto slice = [&](Role role, int32_t e) {
    cuda::DeviceMatrix w = weight(role);
    w.rows /= c.n_experts;
    w.data += static_cast<uint64_t>(e) * static_cast<uint64_t>(w.rows) * w.row_bytes;
    return w;
  };
  for (int32_t e = 0; e < c.n_experts; ++e) {
    const std::span<const int32_t> choices = routing_.choices_of(e);
    if (choices.empty()) continue;
    const auto m = static_cast<int64_t>(choices.size());
    const int64_t first = routing_.begin[static_cast<size_t>(e)];
    expert_products(buffer(in), choice_tokens_device_ + first, m,
                    {slice(Role::FfnGateExps, e), slice(Role::FfnUpExps, e), slice(Role::FfnDownExps, e)}, expert_output_);
    cuda::scatter_rows(expert_output_, by_expert_device_ + first, m, c.dim, choice_rows_, compute_);
  }
  cuda::add_weighted_rows(choice_rows_, weights_device_, tokens_, c.n_experts_used, c.dim, buffer(Activation::Residual),
                          compute_);
}

void GpuBackend::place_expert_cache(const Model& model, const GpuOptions& options) {
  const ModelConfig& c = config_;
  const GpuExpertCachePlan& plan = options.expert_cache;
  cuda::DeviceArena& arena = *arena_;
  const auto batch = static_cast<uint64_t>(max_batch_);
  const uint64_t choices = batch * static_cast<uint64_t>(c.n_experts_used), dim = static_cast<uint64_t>(c.dim);
  staging_device_ = static_cast<uint8_t*>(arena.allocate(plan.slot_bytes, "expert upload staging"));
  results_device_ = arena.allocate_array<float>(choices * dim, "expert results");
  expert_input_ = arena.allocate_array<float>(batch * dim, "expert inputs");
  result_tokens_device_ = arena.allocate_array<int32_t>(choices, "expert result tokens");
  for (size_t i = 0; i < kTensorTypeCount; ++i) {
    if (!interleavable_type(kTensorTypes[i])) continue;
    const std::vector<uint16_t> offsets = interleaved_offsets(kTensorTypes[i]);
    auto* device = arena.allocate_array<uint16_t>(offsets.size(), "interleaved layouts");
    cuda::copy_to_device_async(device, offsets.data(), offsets.size() * sizeof(uint16_t), compute_);
    layout_offsets_[i] = device;
    compute_.synchronize();  // `offsets` goes out of scope
  }
  auto make_slot = [&](const char* what) {
    ExpertSlot slot;
    slot.memory = static_cast<uint8_t*>(arena.allocate(plan.slot_bytes, what));
    slot.ready = std::make_unique<cuda::Event>();
    slot.free = std::make_unique<cuda::Event>();
    slot.ready->record(upload_);
    slot.free->record(compute_);
    return slot;
  };
  passing_ = make_slot("expert passing through");
  for (int64_t s = 0; s < plan.slots; ++s) expert_slots_.push_back(make_slot("expert slots"));
  slot_busy_.assign(expert_slots_.size(), 0);
  for (auto& buffer : staging_host_) buffer = std::make_unique<cuda::PinnedBuffer>(plan.slot_bytes);
  for (auto& event : staging_free_) {
    event = std::make_unique<cuda::Event>();
    event->record(compute_);
  }
  results_host_ = std::make_unique<cuda::PinnedBuffer>(choices * dim * sizeof(float));
  result_tokens_host_ = std::make_unique<cuda::PinnedBuffer>(choices * sizeof(int32_t));
  const auto keys = static_cast<size_t>(c.n_layers * c.n_experts);
  slot_of_key_.assign(keys, -1);
  key_frequency_.assign(keys, 0);
  expert_role_.assign(static_cast<size_t>(c.n_experts), ExpertRole::Host);
  expert_target_.assign(static_cast<size_t>(c.n_experts), nullptr);
  const std::array<Role, 3> roles = {Role::FfnGateExps, Role::FfnUpExps, Role::FfnDownExps};
  for (int64_t l = 0; l < c.n_layers; ++l) {
    slot_layout_.push_back(gpu_expert_slot_layout(model, l));
    std::array<cuda::DeviceMatrix, 3> views{};
    uint64_t bytes = 0;
    for (size_t i = 0; i < roles.size(); ++i) {
      const TensorInfo* info = model.tensors().layer(l, roles[i]);
      if (!info) continue;
      const auto rows = static_cast<int64_t>(info->rows()) / c.n_experts;
      views[i] = {info->type, rows, static_cast<int64_t>(info->shape[0]), row_bytes(info->type, info->shape[0]), nullptr};
      bytes += static_cast<uint64_t>(rows) * views[i].row_bytes;
    }
    expert_views_.push_back(views);
    expert_bytes_.push_back(bytes);
  }
  cpu_matvec_GBps_ = options.cpu_matvec_GBps;
  h2d_GBps_ = options.h2d_GBps;
  host_copy_GBps_ = options.host_copy_GBps;
  copy_pool_ = options.pool;
}

int64_t GpuBackend::expert_victim() const {
  int64_t victim = -1;
  for (size_t s = 0; s < expert_slots_.size(); ++s) {
    if (slot_busy_[s] == expert_clock_) continue;
    const ExpertSlot& slot = expert_slots_[s];
    if (slot.key < 0) return static_cast<int64_t>(s);
    if (victim < 0) {
      victim = static_cast<int64_t>(s);
      continue;
    }
    const ExpertSlot& best = expert_slots_[static_cast<size_t>(victim)];
    const uint32_t frequency = key_frequency_[static_cast<size_t>(slot.key)];
    const uint32_t best_frequency = key_frequency_[static_cast<size_t>(best.key)];
    if (frequency < best_frequency || (frequency == best_frequency && slot.last_use < best.last_use))
      victim = static_cast<int64_t>(s);
  }
  return victim;
}

// An upload pays when the CPU would take longer over the expert's bytes for its tokens (one pass
// over the weights per token at its matrix-vector rate: the cost of few tokens) than copying them
// to pinned memory, across the bus, plus a fixed cost of launching the copies and products.
bool GpuBackend::upload_pays(int64_t layer, int64_t tokens) const {
  constexpr double kUploadOverheadSeconds = 30e-6;
  if (!(cpu_matvec_GBps_ > 0 && h2d_GBps_ > 0 && host_copy_GBps_ > 0)) return false;  // a profile without the rates
  const double bytes = static_cast<double>(expert_bytes_[static_cast<size_t>(layer)]);
  const double on_cpu = static_cast<double>(tokens) * bytes / (cpu_matvec_GBps_ * 1e9);
  const double upload = bytes / (h2d_GBps_ * 1e9) + bytes / (host_copy_GBps_ * 1e9) + kUploadOverheadSeconds;
  return upload < on_cpu;
}

void GpuBackend::begin_layer(int64_t layer, const float* x, int64_t tokens, std::span<const int32_t> chosen,
                             const BatchRouting& routing) {
  const ModelConfig& c = config_;
  ++expert_clock_;
  assist_layer_ = layer;
  assist_routing_ = &routing;
  result_choices_.clear();
  // The input goes up with the layer's first product here (decode's layers mostly have none).
  assist_input_ = x;
  assist_tokens_ = tokens;
  uses_since_aging_ += chosen.size();
  if (uses_since_aging_ > kFrequencyAging) {
    for (uint32_t& frequency : key_frequency_) frequency /= 2;
    uses_since_aging_ = 0;
  }
  auto key_of = [&](int32_t e) { return layer * c.n_experts + e; };
  // Held experts first, so that no decision below evicts one this layer needs.
  for (int32_t e : chosen) {
    const int64_t key = key_of(e);
    ++key_frequency_[static_cast<size_t>(key)];
    const int64_t slot = slot_of_key_[static_cast<size_t>(key)];
    expert_target_[static_cast<size_t>(e)] = slot >= 0 ? &expert_slots_[static_cast<size_t>(slot)] : nullptr;
    expert_role_[static_cast<size_t>(e)] = slot >= 0 ? ExpertRole::Held : ExpertRole::Host;
    if (slot >= 0) slot_busy_[static_cast<size_t>(slot)] = expert_clock_;
  }
  for (int32_t e : chosen) {
    if (expert_role_[static_cast<size_t>(e)] == ExpertRole::Held) continue;
    const int64_t key = key_of(e);
    const int64_t victim = expert_victim();
    // A slot is taken only from an expert chosen less often (or none); an upload that cannot take
    // one computes from the passing slot and is not kept.
    const bool takes_slot =
        victim >= 0 && (expert_slots_[static_cast<size_t>(victim)].key < 0 ||
                        key_frequency_[static_cast<size_t>(key)] >
                            key_frequency_[static_cast<size_t>(expert_slots_[static_cast<size_t>(victim)].key)]);
    const bool upload = upload_pays(layer, static_cast<int64_t>(routing.choices_of(e).size()));
    if (!upload && !takes_slot) continue;
    expert_role_[static_cast<size_t>(e)] = upload ? ExpertRole::Upload : ExpertRole::Copy;
    if (!takes_slot) {
      expert_target_[static_cast<size_t>(e)] = &passing_;
      continue;
    }
    // The old expert leaves now; the new one is in once its weights are (receive).
    ExpertSlot& slot = expert_slots_[static_cast<size_t>(victim)];
    if (slot.key >= 0) slot_of_key_[static_cast<size_t>(slot.key)] = -1;
    slot.key = -1;
    slot.last_use = expert_clock_;
    slot_busy_[static_cast<size_t>(victim)] = expert_clock_;
    expert_target_[static_cast<size_t>(e)] = &slot;
  }
  for (int32_t e : chosen) {
    if (expert_role_[static_cast<size_t>(e)] != ExpertRole::Held) continue;
    ++assist_stats_.hits;
    compute_expert(e, *expert_target_[static_cast<size_t>(e)]);
  }
}

bool GpuBackend::receive(int32_t expert, const ExpertWeights& weights) {
  const ExpertRole role = expert_role_[static_cast<size_t>(expert)];
  if (role == ExpertRole::Host || role == ExpertRole::Held) return false;
  ExpertSlot& slot = *expert_target_[static_cast<size_t>(expert)];
  upload_expert(expert, weights, slot);
  if (&slot != &passing_) {
    slot.key = assist_layer_ * config_.n_experts + expert;
    slot_of_key_[static_cast<size_t>(slot.key)] = &slot - expert_slots_.data();
  }
  if (role == ExpertRole::Copy) {
    ++assist_stats_.kept;
    return false;
  }
  compute_expert(expert, slot);
  return true;
}

// The host's threads are idle while the expert half hands an expert over: they copy it together.
void GpuBackend::copy_to_staging(uint8_t* to, const uint8_t* from, uint64_t bytes) const {
  constexpr uint64_t kPiece = 256 << 10;
  if (!copy_pool_ || bytes <= kPiece) {
    std::memcpy(to, from, bytes);
    return;
  }
  copy_pool_->parallel_for(static_cast<int64_t>((bytes + kPiece - 1) / kPiece), 1, [&](int64_t begin, int64_t end) {
    const uint64_t first = static_cast<uint64_t>(begin) * kPiece;
    std::memcpy(to + first, from + first, std::min(bytes, static_cast<uint64_t>(end) * kPiece) - first);
  });
}

// Through pinned staging (two, in turn, so that one fills while the other's copy runs); rows the
// CPU interleaved come back to plain blocks on the device.
void GpuBackend::upload_expert(int32_t expert, const ExpertWeights& weights, ExpertSlot& slot) {
  const cuda::NvtxRange range("upload expert");
  const std::array<const WeightMatrix*, 3> parts = {&weights.gate, &weights.up, &weights.down};
  const std::array<uint64_t, 4>& layout = slot_layout_[static_cast<size_t>(assist_layer_)];
  staging_free_[static_cast<size_t>(next_staging_)]->synchronize();
  uint8_t* staging = staging_host_[static_cast<size_t>(next_staging_)]->data();
  if (trace_)
    begin_span(Trace::Track::Upload, strprintf("upload expert %lld.%d", static_cast<long long>(assist_layer_), expert),
               upload_);
  slot.free->wait_on(upload_);
  for (size_t i = 0; i < parts.size(); ++i) {
    const WeightMatrix& w = *parts[i];
    const uint64_t bytes = static_cast<uint64_t>(w.rows) * w.row_bytes;
    if (w.tail || bytes > layout[i + 1] - layout[i]) fail("internal: an expert's slice does not fit its slot");
    copy_to_staging(staging + layout[i], w.data, bytes);
    if (w.interleaved) {
      cuda::copy_to_device_async(staging_device_ + layout[i], staging + layout[i], bytes, upload_);
      cuda::deinterleave_rows(staging_device_ + layout[i], layout_offsets(w.type), w.rows,
                              static_cast<int64_t>(w.row_bytes), type_traits(w.type).block_bytes, slot.memory + layout[i],
                              upload_);
    } else {
      cuda::copy_to_device_async(slot.memory + layout[i], staging + layout[i], bytes, upload_);
    }
    assist_stats_.upload_bytes += bytes;
  }
  end_span(upload_);
  staging_free_[static_cast<size_t>(next_staging_)]->record(upload_);
  slot.ready->record(upload_);
  next_staging_ = 1 - next_staging_;
  ++assist_stats_.uploads;
}

// As experts_ffn computes one expert, from a slot, with its results in rows of their own.
void GpuBackend::compute_expert(int32_t expert, ExpertSlot& slot) {
  const ModelConfig& c = config_;
  const cuda::NvtxRange range("expert on the GPU");
  if (trace_)
    begin_span(Trace::Track::Gpu, strprintf("expert %lld.%d", static_cast<long long>(assist_layer_), expert), compute_);
  const std::span<const int32_t> choices = assist_routing_->choices_of(expert);
  const auto m = static_cast<int64_t>(choices.size());
  const auto first = static_cast<int64_t>(result_choices_.size());
  auto* tokens = reinterpret_cast<int32_t*>(result_tokens_host_->data()) + first;
  for (int64_t i = 0; i < m; ++i) tokens[i] = choices[static_cast<size_t>(i)] / static_cast<int32_t>(c.n_experts_used);
  result_choices_.insert(result_choices_.end(), choices.begin(), choices.end());
  cuda::copy_to_device_async(result_tokens_device_ + first, tokens, static_cast<uint64_t>(m) * sizeof(int32_t), compute_);
  if (assist_input_) {
    cuda::copy_to_device_async(buffer(Activation::Normed), assist_input_,
                               static_cast<uint64_t>(assist_tokens_ * c.dim) * sizeof(float), compute_);
    assist_input_ = nullptr;
  }
  slot.ready->wait_on(compute_);
  slot.last_use = expert_clock_;
  const std::array<uint64_t, 4>& layout = slot_layout_[static_cast<size_t>(assist_layer_)];
  std::array<cuda::DeviceMatrix, 3> w = expert_views_[static_cast<size_t>(assist_layer_)];
  for (size_t i = 0; i < w.size(); ++i) w[i].data = slot.memory + layout[i];
  expert_products(buffer(Activation::Normed), result_tokens_device_ + first, m, w, results_device_ + first * c.dim);
  slot.free->record(compute_);
  end_span(compute_);
  ++assist_stats_.uses;
}

void GpuBackend::finish_layer(const std::function<void(int32_t choice, const float* result)>& each) {
  const auto rows = static_cast<int64_t>(result_choices_.size());
  if (rows == 0) return;
  auto* results = reinterpret_cast<float*>(results_host_->data());
  cuda::copy_to_host_async(results, results_device_, static_cast<uint64_t>(rows * config_.dim) * sizeof(float), compute_);
  compute_.synchronize();
  for (int64_t i = 0; i < rows; ++i) each(result_choices_[static_cast<size_t>(i)], results + i * config_.dim);
}

void GpuBackend::keep_rows(std::span<const int64_t> rows) {
  // Ascending rows move down in place, one copy after another on the stream: row r to row i <= r.
  float* x = buffer(Activation::Residual);
  const uint64_t row_bytes = static_cast<uint64_t>(config_.dim) * sizeof(float);
  for (size_t i = 0; i < rows.size(); ++i)
    if (rows[i] != static_cast<int64_t>(i))
      cuda::copy_on_device_async(x + static_cast<int64_t>(i) * config_.dim, x + rows[i] * config_.dim, row_bytes, compute_);
  tokens_ = static_cast<int64_t>(rows.size());
}

void GpuBackend::output_logits(Activation in, float* logits) {
  const DeviceProduct product{&globals_[Role::Output], logits_};
  multiply(buffer(in), activation_width(in, config_), std::span<const DeviceProduct>(&product, 1), tokens_);
  cuda::copy_to_host_async(logits, logits_, static_cast<uint64_t>(tokens_ * config_.vocab) * sizeof(float), compute_);
  logits_pending_ = true;
}

void GpuBackend::visit_kv(int64_t layer, int64_t first, int64_t count, bool to_device) {
  if (count == 0) return;
  const uint64_t row = static_cast<uint64_t>(config_.kv_dim()) * sizeof(uint16_t);
  const uint64_t offset = static_cast<uint64_t>(first) * row, bytes = static_cast<uint64_t>(count) * row;
  auto* host_keys = reinterpret_cast<uint8_t*>(host_kv_.keys(layer, 0));
  auto* host_values = reinterpret_cast<uint8_t*>(host_kv_.values(layer, 0));
  auto* device_keys = reinterpret_cast<uint8_t*>(key_cache(layer));
  auto* device_values = reinterpret_cast<uint8_t*>(value_cache(layer));
  if (to_device) {
    cuda::copy_to_device_async(device_keys + offset, host_keys + offset, bytes, compute_);
    cuda::copy_to_device_async(device_values + offset, host_values + offset, bytes, compute_);
  } else {
    cuda::copy_to_host_async(host_keys + offset, device_keys + offset, bytes, compute_);
    cuda::copy_to_host_async(host_values + offset, device_values + offset, bytes, compute_);
  }
}

}  // namespace

void require_gpu(int device) {
  std::string why;
  const std::vector<cuda::DeviceInfo> devices = cuda::list_devices(&why);
  if (devices.empty()) fail("%s; leave out --gpu-mem to run on the CPU", why.c_str());
  if (device < 0 || device >= static_cast<int>(devices.size()))
    fail("CUDA device %d does not exist (%zu present)", device, devices.size());
}

namespace {

// Room kept free beside the arena: cuBLAS and the runtime allocate there after the arena is taken.
uint64_t runtime_reserve(uint64_t total_bytes) { return std::max<uint64_t>(uint64_t{256} << 20, total_bytes / 50); }

}  // namespace

uint64_t gpu_arena_room(int device) {
  cuda::use_device(device);
  uint64_t free_bytes = 0, total_bytes = 0;
  cuda::device_memory(&free_bytes, &total_bytes);
  const uint64_t reserve = runtime_reserve(total_bytes);
  return free_bytes > reserve ? free_bytes - reserve : 0;
}

std::unique_ptr<Backend> make_gpu_backend(const Model& model, const GpuOptions& options) {
  require_gpu(options.device);
  std::string why;
  const cuda::DeviceInfo device = cuda::list_devices(&why).at(static_cast<size_t>(options.device));
  if (model.config().head_dim > cuda::kMaxHeadDim)
    fail("the GPU path takes head dimensions up to %lld; this model's is %lld", static_cast<long long>(cuda::kMaxHeadDim),
         static_cast<long long>(model.config().head_dim));
  if (options.tiers && model.config().has_experts() && options.experts == GpuExperts::OnGpu)
    fail("internal: experts on the GPU are resident, never split over the tiers");
  const GpuMemoryPlan plan = gpu_memory_plan(model, options.experts);
  if (!options.tiers && options.budget < plan.total() + options.expert_cache.total())
    fail("--gpu-mem %s is below the %s this model needs on the GPU (%s); a smaller --ctx shrinks the KV cache",
         format_bytes(options.budget).c_str(), format_bytes(plan.total()).c_str(), plan.describe().c_str());
  if (options.expert_cache.slots > 0 && options.experts != GpuExperts::OnCpu)
    fail("internal: an expert cache in VRAM serves experts on the CPU only");
  const uint64_t needed = options.tiers ? options.tiers->plan().gpu_used() : plan.total() + options.expert_cache.total();
  if (const uint64_t room = gpu_arena_room(options.device); needed > room)
    fail("the model needs %s on the GPU but %s has room for %s (%s)", format_bytes(needed).c_str(), device.name.c_str(),
         format_bytes(room).c_str(), kGpuRoomMeaning);
  return std::make_unique<GpuBackend>(model, plan, options);
}

}  // namespace fi
