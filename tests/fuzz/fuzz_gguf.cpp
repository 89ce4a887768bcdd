// libFuzzer: arbitrary bytes as a model file through everything that reads one before any weight
// is touched — the GGUF reader, the tensor table's validation, the architecture's configuration and
// tensor checks (older per-expert names too), the tokenizer built from the metadata and both planners. Anything but a clean
// fi::Error is a finding.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "host/engine/placement.h"
#include "host/model/model.h"
#include "host/text/tokenizer.h"
#include "io/architecture.h"
#include "io/error.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The reader takes a path: give it an in-memory file.
  static const int fd = ::memfd_create("fuzz.gguf", 0);
  if (fd < 0 || ::ftruncate(fd, 0) != 0 || ::pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return 0;
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    const fi::GgufFile file = fi::GgufFile::open(path);
    for (const fi::TensorInfo& tensor : file.tensors().all()) (void)fi::parse_per_expert_tensor_name(tensor.name);
    try {
      fi::Tokenizer::from_gguf(file);
    } catch (const fi::Error&) {
    }
    const auto model = fi::Model::open(path, {64, 256});
    fi::make_plan(fi::host_plan_input(*model, 64ull << 20, 2));
    fi::make_tier_plan(fi::tier_input(*model, 64ull << 20, 2, 256ull << 20), fi::nominal_profile());
  } catch (const fi::Error&) {
  }
  return 0;
}
