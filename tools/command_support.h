#pragma once
// Helpers the subcommands share.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "host/engine/engine.h"
#include "host/gpu/gpu_backend.h"
#include "host/text/tokenizer.h"
#include "io/async_reader.h"
#include "planner/plan.h"
#include "planner/profile.h"

namespace fi {

// Where the engine's weights live and why: one log line each.
void show_placement(const Engine& engine);
// Closes the engine's trace (--trace), when one was asked for; fails when it could not be written.
void finish_trace(Engine& engine);
// Writes `json` to `path` (one error line naming `command` when it cannot).
void write_json(const std::string& path, const nlohmann::json& json, const char* command);
// The profile to predict with: --profile FILE (when not empty), else the one probe cached, else
// none.
std::optional<Profile> chosen_profile(const std::string& path);
// Weight bytes the CPU reads per decoded token under a host plan: every planned matrix (of stacked
// expert tensors, the chosen experts' share) plus one embedding row.
uint64_t compute_bytes_per_token(const Plan& plan, const Model& model);
// Of a stacked expert tensor's bytes (or elements), the share a token multiplies: its chosen experts'.
uint64_t chosen_experts_share(const ModelConfig& config, uint64_t stacked);
// The matrices the GPU multiplies per decoded token (gpu_tensors): all but the token embedding (one
// row of it), of stacked expert tensors the chosen experts' share, and the output head (the
// embedding again when tied).
struct GpuMatrixWork {
  uint64_t bytes = 0;
  uint64_t elements = 0;
  uint64_t output_elements = 0;  // of the head, which prefill multiplies once
};
GpuMatrixWork gpu_matrix_work(const Model& model, GpuExperts experts);
double seconds_since(std::chrono::steady_clock::time_point start);
// What this build can use: "CUDA 13.0 runtime, CPU kernels: AVX-VNNI" and the like.
std::string build_features();

}  // namespace fi
