#include "tools/command_support.h"

#include <fstream>

#include "cuda/device_info.h"
#include "host/kernels/quant.h"
#include "io/error.h"
#include "io/log.h"
#include "planner/budget.h"
#include "planner/profile.h"

namespace fi {

void show_placement(const Engine& engine) {
  for (const std::string& line : engine.placement()) log_info("%s", line.c_str());
}

void finish_trace(Engine& engine) {
  if (engine.trace()) engine.trace()->finish();
}

void write_json(const std::string& path, const nlohmann::json& json, const char* command) {
  std::ofstream out(path);
  out << json.dump(2) << "\n";
  out.close();
  if (!out) fail("%s: cannot write '%s'", command, path.c_str());
}

std::optional<Profile> chosen_profile(const std::string& path) {
  if (!path.empty()) return Profile::load(path);
  return cached_profile();
}

uint64_t chosen_experts_share(const ModelConfig& config, uint64_t stacked) {
  return stacked / static_cast<uint64_t>(config.n_experts) * static_cast<uint64_t>(config.n_experts_used);
}

uint64_t compute_bytes_per_token(const Plan& plan, const Model& model) {
  const ModelConfig& c = model.config();
  uint64_t bytes = row_bytes(model.tensors().global(Role::TokenEmbedding)->type, static_cast<uint64_t>(c.dim));
  for (const PlanUnit& unit : plan.units)
    for (const PlanMatrix& m : unit.matrices) {
      // A token multiplies only the slices of the experts it chose.
      const bool stacked = role_spec(model.tensors().locate(m.tensor).role).slices != Dim::One;
      bytes += stacked ? chosen_experts_share(c, m.bytes()) : m.bytes();
    }
  return bytes + plan.expert_cache.used_bytes_per_token();
}

GpuMatrixWork gpu_matrix_work(const Model& model, GpuExperts experts) {
  const TensorInfo* embedding = model.tensors().global(Role::TokenEmbedding);
  GpuMatrixWork work;
  for (const TensorInfo* tensor : gpu_tensors(model, experts))
    if (tensor->n_dims == 2 && tensor != embedding) {
      work.bytes += tensor->bytes;
      work.elements += tensor->elements();
    } else if (tensor->n_dims == 3) {
      work.bytes += chosen_experts_share(model.config(), tensor->bytes);
      work.elements += chosen_experts_share(model.config(), tensor->elements());
    }
  const TensorInfo& output = model.tensors().output();
  work.output_elements = output.elements();
  if (model.tied_output()) {
    work.bytes += output.bytes;
    work.elements += output.elements();
  }
  return work;
}

std::string build_features() {
  std::string why;
  const bool cuda = !cuda::list_devices(&why).empty();
  return std::string("CPU kernels: ") + kernel_isa_name() + "; CUDA: " +
#if FLEXINFER_HAVE_CUDA
         (cuda ? "built in, a device is usable" : "built in (" + why + ")");
#else
         (cuda ? "" : "not built in");
#endif
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace fi
