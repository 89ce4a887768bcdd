#include "host/engine/placement.h"

#include "host/cpu/cpu_backend.h"
#include "host/gpu/gpu_backend.h"
#include "host/memory/kv_cache.h"
#include "io/direct_file.h"
#include "io/error.h"

namespace fi {

namespace {
std::string kv_cache_label(const Model& model) {
  if (model.sequences() == 1) return strprintf("KV cache (%lld tokens)", static_cast<long long>(model.context()));
  return strprintf("KV cache (%lld sequences of %lld tokens)", static_cast<long long>(model.sequences()),
                   static_cast<long long>(model.context()));
}
}  // namespace

PlanInput host_plan_input(const Model& model, std::optional<uint64_t> host_budget, int threads, HostPart part) {
  const ModelConfig& config = model.config();
  const ModelTensors& tensors = model.tensors();
  const bool whole = part == HostPart::Whole;
  if (!whole && !config.has_experts()) fail("internal: a host plan of expert halves for a model without experts");
  PlanInput input;
  input.host_budget = host_budget;
  for (int64_t l = 0; l < config.n_layers; ++l) {
    const bool has_experts = tensors.layer(l, Role::FfnGateInp) != nullptr;
    auto wanted = [&](Role role) { return whole || (has_experts && in_expert_half(role)); };
    PlanInput::Unit unit{"blk." + std::to_string(l), {}};
    for (Role role : preserved_layer_matrices())
      if (const TensorInfo* tensor = tensors.layer(l, role); tensor && wanted(role)) {
        // Beside a GPU the router is the one dense matrix the CPU multiplies: small, never streamed
        // (the head unit, last on a streamed schedule, computes on the GPU).
        if (!whole && role == Role::FfnGateInp) input.always_resident.push_back(tensor);
        else unit.matrices.push_back(tensor);
      }
    input.units.push_back(std::move(unit));
    // Norms and biases: small, read once.
    for (size_t r = 0; r < kRoleCount; ++r) {
      const auto role = static_cast<Role>(r);
      if (is_layer_role(role) && !role_spec(role).matrix && wanted(role))
        if (const TensorInfo* tensor = tensors.layer(l, role)) input.always_resident.push_back(tensor);
    }
  }
  // The units stay one per layer and one for the head, so that a unit's index is its layer's.
  input.units.push_back({"output", {}});
  if (whole) {
    input.units.back().matrices.push_back(&tensors.output());
    input.always_resident.push_back(tensors.global(Role::OutputNorm));
  }
  if (config.has_experts()) {
    input.experts.count = config.n_experts;
    input.experts.used = config.n_experts_used;
    for (int64_t l = 0; l < config.n_layers; ++l) {
      auto& layer = input.experts.layers.emplace_back();
      for (Role role : {Role::FfnGateExps, Role::FfnUpExps, Role::FfnDownExps})
        if (const TensorInfo* tensor = tensors.layer(l, role)) layer.push_back(tensor);
    }
  }
  // Without a budget the embedding is loaded; with one, the few rows a batch needs are read.
  if (whole && !tensors.tied_output()) input.resident_without_budget.push_back(tensors.global(Role::TokenEmbedding));

  if (whole) input.fixed.push_back({kv_cache_label(model), kv_cache_bytes(config, model.kv_rows())});
  input.fixed.push_back({"scratch", CpuBackend::scratch_bytes(config, model.context(), model.max_batch(), threads) +
                                        2 * kDirectAlignment +
                                        row_bytes(tensors.global(Role::TokenEmbedding)->type, static_cast<uint64_t>(config.dim))});
  input.fixed.push_back({"runtime", runtime_bytes(model.file(), config)});
  if (!whole) {
    input.fixed.push_back({"GPU weight loading buffers (pinned)", kGpuLoadBufferBytes});
    input.fixed.push_back({"GPU expert uploads and results (pinned)", gpu_expert_pinned_bytes(model)});
  }
  input.kernel_allowance = true;
  if (whole) input.minimum_hint = "; a smaller --ctx shrinks the KV cache";
  return input;
}

TierInput tier_input(const Model& model, std::optional<uint64_t> host_budget, int threads, uint64_t gpu_budget) {
  const PlanInput host = host_plan_input(model, host_budget, threads);
  const ModelConfig& config = model.config();
  TierInput input;
  input.units = host.units;
  // A tied output head multiplies with the token embedding, which the GPU holds whole to embed:
  // nothing of it is placed (or uploaded) again.
  if (model.tied_output()) input.units.back().matrices.clear();
  input.kv_bytes_per_layer = kv_cache_layer_bytes(config, model.kv_rows());
  input.gpu_budget = gpu_budget;
  input.host_budget = host_budget;
  const GpuMemoryPlan device = gpu_memory_plan(model);
  // What the GPU side holds whole besides the planned matrices: the token embedding (it embeds on the
  // device), the norms and biases; and room for every allocation's 256-byte alignment.
  uint64_t small = 0;
  for (const TensorInfo* tensor : host.always_resident) small += tensor->bytes;
  input.gpu_fixed = {{"activations and logits", device.activations},
                     {"dequantized rows (prefill)", device.dequantized},
                     {"cuBLAS workspace", device.blas_workspace},
                     {"token embedding", model.tensors().global(Role::TokenEmbedding)->bytes},
                     {"norms", small},
                     {"allocation alignment", 256 * (model.file().tensors().all().size() + 64)}};
  // The host's fixed costs but the KV cache (the first one), plus the small tensors.
  input.host_fixed.assign(host.fixed.begin() + 1, host.fixed.end());
  uint64_t small_spans = 0;
  for (const TensorInfo* tensor : host.always_resident)
    small_spans += align_up(tensor->file_offset + tensor->bytes, kDirectAlignment) - align_down(tensor->file_offset, kDirectAlignment);
  input.host_fixed.push_back({"norms and other small tensors", small_spans});
  input.host_fixed.push_back({"weight loading buffers (pinned)", kGpuLoadBufferBytes});
  return input;
}

}  // namespace fi
