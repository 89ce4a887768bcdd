#pragma once
// Helpers shared by the suites: fixture paths, scratch files and generated models.
#include <gtest/gtest.h>

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "io/gguf.h"

#include "cuda/device_info.h"
#include "tools/model_maker.h"

namespace fi::test {

// ../shared/data when present, else empty.
std::string shared_data();
// The checkout's root (for tests/data): where the build found it, else $FLEXINFER_SOURCE_DIR, else
// the working directory (the binaries carried to a GPU machine run from a copy of the tree).
std::string source_dir();

#define FI_REQUIRE_SHARED_DATA()                                                                  \
  do {                                                                                            \
    if (::fi::test::shared_data().empty())                                                        \
      GTEST_SKIP() << "../shared/data is not present beside the checkout; fixture test skipped"; \
  } while (0)

// GPU tests run only where a CUDA device is usable; elsewhere they skip saying why.
#define FI_REQUIRE_GPU()                                                                          \
  do {                                                                                            \
    std::string fi_no_gpu_reason;                                                                 \
    if (::fi::cuda::list_devices(&fi_no_gpu_reason).empty())                                     \
      GTEST_SKIP() << fi_no_gpu_reason << "; GPU test skipped";                                   \
  } while (0)

// A fresh scratch directory for this test process.
std::string scratch_dir();
std::string scratch_path(const std::string& name);

// Writes a random-weight model of `shape` and returns its path (cached per name in the process).
std::string generated_model(const std::string& name, const ModelShape& shape, WeightScheme scheme, uint64_t seed = 7,
                            const std::vector<TensorTypeOverride>& tensor_types = {});
// make-model --preset PRESET --type TYPE --byte-vocab --seed 1, cached per name in the process.
std::string preset_model(const std::string& preset, const std::string& type);

// A copy of a model file (metadata and tensors, data included) with metadata keys and tensors left
// out, and keys and zero-filled tensors added; returns its path.
struct ModelEdit {
  std::vector<std::string> drop_keys;
  std::function<void(GgufWriter&)> add_keys;
  std::vector<std::string> drop_tensors;
  struct Tensor {
    std::string name;
    TensorType type;
    std::vector<uint64_t> shape;
  };
  std::vector<Tensor> add_tensors;
};
std::string edited_model(const std::string& source, const std::string& name, const ModelEdit& edit);

std::vector<uint8_t> read_bytes(const std::string& path);
std::string read_bytes_as_text(const std::string& path);
void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes);

struct CommandResult {
  int exit_code;
  std::string out, err;
  double seconds = 0.0;
};
struct RunOptions {
  std::vector<std::string> environment;  // NAME=VALUE, added to the inherited environment
  uint64_t address_space_limit = 0;      // RLIMIT_AS in bytes; 0: none (ignored in sanitizer builds)
  std::string cgroup_procs;              // a cgroup.procs file to join before running
  std::string input;                     // standard input (empty: /dev/null)
};
// Runs the flexinfer binary with these arguments (no shell), capturing output.
CommandResult run_flexinfer(const std::vector<std::string>& arguments, const RunOptions& options = {});
// Starts the flexinfer binary in the background (no shell), its standard output and error to these
// files, for a test that signals it while it runs; the caller waits for the returned pid.
pid_t start_flexinfer(const std::vector<std::string>& arguments, const std::string& out, const std::string& err);

// ||a - b|| / ||b||
double relative_rms(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace fi::test
