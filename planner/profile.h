#pragma once
// Measured bandwidths of a machine (from `flexinfer probe`), as plain numbers the planner and the
// benchmarks reason with, stored as JSON so a plan for any machine can be made anywhere.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "io/tensor_type.h"
#include "planner/plan.h"

namespace fi {

struct Profile {
  struct DiskPoint {
    int queue_depth = 0;
    uint64_t request_bytes = 0;
    double GBps = 0.0;
  };
  std::string machine;            // free text: CPU model, disk
  double disk_read_GBps = 0.0;     // O_DIRECT, at the best queue depth and request size
  int disk_queue_depth = 32;
  uint64_t disk_request_bytes = 1ull << 20;
  std::vector<DiskPoint> disk_points;
  double host_read_GBps = 0.0;     // memory read, all threads
  double cpu_matvec_GBps = 0.0;    // weight bytes per second through the CPU matrix-vector kernels (Q4_0)
  // The same per weight type, by type name ("F16", "Q8_0", ...), where probe measured it.
  std::map<std::string, double> cpu_matvec_GBps_by_type;
  int cpu_threads = 0;
  // The GPU's side; all 0 when probe saw no GPU.
  std::string gpu;                 // the device's name
  double h2d_pinned_GBps = 0.0;    // host to device from pinned memory
  double h2d_pageable_GBps = 0.0;  // host to device from ordinary memory
  double d2h_GBps = 0.0;
  double vram_read_GBps = 0.0;     // a kernel reading device memory
  double gpu_matvec_GBps = 0.0;    // weight bytes per second through the GPU matrix-vector kernels

  bool has_gpu() const { return h2d_pinned_GBps > 0 && vram_read_GBps > 0 && gpu_matvec_GBps > 0; }
  // The CPU's matrix-vector rate on `type`: measured for it, else cpu_matvec_GBps.
  double cpu_matvec_GBps_for(TensorType type) const;

  std::string to_json() const;
  static Profile from_json(const std::string& text, const std::string& origin);
  static Profile load(const std::string& path);
  void save(const std::string& path) const;
};

// $XDG_CACHE_HOME/flexinfer/profile.json, else ~/.cache/flexinfer/profile.json.
std::string default_profile_path();
// The cached profile, if probe has run on this machine.
std::optional<Profile> cached_profile();

inline constexpr const char* kNominalProfile = "nominal figures of a mid-range laptop";
// Nominal figures of a mid-range laptop (PCIe 4 x8, an NVMe drive, dual-channel memory), for plans
// made before 'flexinfer probe' has measured the machine; `machine` is kNominalProfile.
Profile nominal_profile();

struct Prediction {
  double decode_tok_s = 0.0;
  double disk_seconds = 0.0;     // per token
  double compute_seconds = 0.0;  // per token
  std::string bound;             // "disk" or "cpu"
};
// Time per token is the slower of reading the streamed bytes and computing over every weight byte
// (they overlap); `compute_bytes` is what the CPU reads per token.
Prediction predict_decode(const Plan& plan, const Profile& profile, uint64_t compute_bytes);

}  // namespace fi
