// flexinfer probe: measure this machine's disk, memory, CPU kernels and GPU for the planners.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "cuda/device_info.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "host/kernels/measure.h"
#include "host/kernels/quant.h"
#include "io/disk_probe.h"
#include "io/error.h"
#include "planner/budget.h"
#include "planner/profile.h"
#include "tools/cli.h"
#include "tools/command_support.h"
#include "tools/commands.h"

namespace fi {

int command_probe(int argc, char** argv) {
  const auto app = command_app("probe", "Measure this machine's disk, memory, CPU kernels and GPU (saved for plan, bench and generate).");
  std::string disk_file, output = default_profile_path();
  bool quick = false;
  int64_t threads = default_thread_count();
  app->add_option("-m,--model,--file", disk_file,
                  "measure the disk this file is on (default: a temporary 1 GiB file in the cache directory)")
      ->type_name("FILE");
  app->add_option("-o,--output", output, "where to save the profile (default: the cache directory)")->type_name("FILE");
  app->add_flag("--quick", quick, "fewer and shorter measurements");
  integer_option(*app, "-t,--threads", threads, 1, 1024, "CPU threads (default: all cores)");
  if (!parse_command_line(*app, argc, argv, 2)) return 0;
  Profile profile;

  std::string temporary;
  if (disk_file.empty()) {
    temporary = output + ".probe-data";
    Profile{}.save(temporary);  // creates the directories
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    std::vector<char> block(1 << 20);
    std::mt19937_64 rng(1);
    for (int i = 0; i < 1024 && out; ++i) {
      for (size_t j = 0; j + 8 <= block.size(); j += 8) *reinterpret_cast<uint64_t*>(&block[j]) = rng();
      out.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
    out.close();
    if (!out) fail("probe: cannot write a test file at '%s' (give one with --file)", temporary.c_str());
    disk_file = temporary;
  }
  std::printf("disk: direct reads of %s\n  %-8s %-10s %8s\n", disk_file.c_str(), "queue", "request", "GB/s");
  std::vector<DiskRate> rates;
  try {
    rates = measure_disk(disk_file, quick ? std::vector<int>{4, 32} : std::vector<int>{4, 16, 32, 64},
                         quick ? std::vector<uint64_t>{1u << 20} : std::vector<uint64_t>{256u << 10, 1u << 20, 4u << 20},
                         quick ? 128ull << 20 : 512ull << 20);
  } catch (...) {
    if (!temporary.empty()) ::unlink(temporary.c_str());
    throw;
  }
  if (!temporary.empty()) ::unlink(temporary.c_str());
  for (const DiskRate& r : rates) {
    std::printf("  %-8d %-10s %8.2f\n", r.queue_depth, format_bytes(r.request_bytes).c_str(), r.GBps);
    profile.disk_points.push_back({r.queue_depth, r.request_bytes, r.GBps});
  }
  const DiskRate best = choose_disk_setting(rates);
  profile.disk_read_GBps = best.GBps;
  profile.disk_queue_depth = best.queue_depth;
  profile.disk_request_bytes = best.request_bytes;
  std::printf("  chosen: queue depth %d, %s requests: %.2f GB/s\n", best.queue_depth,
              format_bytes(best.request_bytes).c_str(), best.GBps);

  ThreadPool pool(static_cast<int>(threads));
  profile.cpu_threads = pool.size();
  const int rounds = quick ? 2 : 4;
  profile.host_read_GBps = measure_memory_read_GBps(pool, quick ? 1ull << 30 : 2ull << 30, rounds);
  std::printf("memory read: %.2f GB/s (%d threads)\n", profile.host_read_GBps, pool.size());
  profile.cpu_matvec_GBps = measure_matvec_GBps(pool, TensorType::Q4_0, quick ? 512ull << 20 : 1ull << 30, rounds);
  std::printf("CPU Q4_0 matrix-vector: %.2f GB/s of weights (%s kernels)\n", profile.cpu_matvec_GBps, kernel_isa_name());
  // The other types models come in: the planner weighs CPU-decoded layers by their own type's rate.
  profile.cpu_matvec_GBps_by_type[type_name(TensorType::Q4_0)] = profile.cpu_matvec_GBps;
  for (TensorType type : kTensorTypes) {
    if (type == TensorType::Q4_0) continue;
    const double rate = measure_matvec_GBps(pool, type, quick ? 128ull << 20 : 512ull << 20, quick ? 2 : 3);
    profile.cpu_matvec_GBps_by_type[type_name(type)] = rate;
    std::printf("CPU %s matrix-vector: %.2f GB/s of weights\n", type_name(type), rate);
  }
  profile.machine = strprintf("%d threads, %s kernels", pool.size(), kernel_isa_name());

  std::string no_gpu;
  const auto devices = cuda::list_devices(&no_gpu);
  if (devices.empty()) {
    std::printf("GPU: none (%s)\n", no_gpu.c_str());
  } else {
    cuda::use_device(0);
    const cuda::DeviceBandwidth bandwidth = cuda::measure_bandwidth(quick ? 128ull << 20 : 512ull << 20);
    profile.gpu = devices[0].name;
    profile.h2d_pinned_GBps = bandwidth.h2d_pinned_GBps;
    profile.h2d_pageable_GBps = bandwidth.h2d_pageable_GBps;
    profile.d2h_GBps = bandwidth.d2h_GBps;
    profile.vram_read_GBps = bandwidth.vram_read_GBps;
    profile.gpu_matvec_GBps = cuda::measure_matvec_GBps(TensorType::Q4_0, quick ? 128ull << 20 : 512ull << 20);
    std::printf("GPU %s: host to device %.1f GB/s pinned, %.1f GB/s pageable; device to host %.1f GB/s; VRAM read "
                "%.0f GB/s; Q4_0 matrix-vector %.0f GB/s of weights\n",
                profile.gpu.c_str(), profile.h2d_pinned_GBps, profile.h2d_pageable_GBps, profile.d2h_GBps,
                profile.vram_read_GBps, profile.gpu_matvec_GBps);
    profile.machine += ", " + profile.gpu;
  }
  profile.save(output);
  std::printf("saved %s\n", output.c_str());
  return 0;
}

}  // namespace fi
