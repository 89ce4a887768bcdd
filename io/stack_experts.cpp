#include "io/stack_experts.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "io/architecture.h"
#include "io/error.h"
#include "io/direct_file.h"
#include "io/gguf.h"

namespace fi {

namespace {

// One stacked tensor to be: its experts' tensors, indexed by expert.
struct Stack {
  Role role;
  int64_t layer;
  std::vector<const TensorInfo*> experts;
};

// Whether two paths name the same file (a write there would empty the input before it is read).
bool same_file(const std::string& a, const std::string& b) {
  struct stat first {}, second {};
  return stat(a.c_str(), &first) == 0 && stat(b.c_str(), &second) == 0 && first.st_dev == second.st_dev &&
         first.st_ino == second.st_ino;
}

std::string directory_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Copies `bytes` at `offset` of the input into the writer, a buffer at a time.
void copy_range(const DirectFile& in, uint64_t offset, uint64_t bytes, std::vector<uint8_t>& buffer, GgufWriter& writer,
                const std::atomic<bool>* stop) {
  while (bytes > 0) {
    if (stop && stop->load()) fail("%s: interrupted; the unfinished copy is removed", in.path().c_str());
    const uint64_t take = std::min<uint64_t>(bytes, buffer.size());
    in.read(buffer.data(), offset, take);
    writer.write_data(buffer.data(), take);
    offset += take;
    bytes -= take;
  }
}

}  // namespace

StackedExperts stack_experts(const std::string& input, const std::string& output, const std::atomic<bool>* stop) {
  const std::string partial = output + kUnfinishedSuffix;
  if (same_file(input, output) || same_file(input, partial))
    fail("%s: writing it would overwrite the input; give another path", output.c_str());
  UnfinishedFile written(output);
  const GgufFile file = GgufFile::open(input);
  // The hyperparameters as the engine reads them (expert and layer counts checked there).
  const ModelConfig config = ModelConfig::from_gguf(file);
  if (!config.has_experts()) fail("%s: a model without experts; nothing to stack", input.c_str());
  const auto experts = static_cast<uint64_t>(config.n_experts);

  // Each per-expert tensor into its stack, keyed by its first member's place in the file's order.
  std::map<std::pair<Role, int64_t>, size_t> stack_of;
  std::vector<Stack> stacks;
  std::vector<const TensorInfo*> kept;  // every other tensor, as it is
  std::vector<std::pair<size_t, bool>> order;  // (index into stacks or kept, is a stack), in file order
  const TensorInfo* already_stacked = nullptr;
  for (const TensorInfo& tensor : file.tensors().all()) {
    const std::optional<PerExpertTensor> named = parse_per_expert_tensor_name(tensor.name);
    if (!named) {
      const std::optional<NamedRole> role = parse_tensor_name(tensor.name);
      if (!already_stacked && role && role_spec(role->role).slices == Dim::Experts) already_stacked = &tensor;
      order.push_back({kept.size(), false});
      kept.push_back(&tensor);
      continue;
    }
    if (named->expert >= config.n_experts)
      fail("%s: tensor '%s' is past the model's %lld experts (0..%lld)", input.c_str(), tensor.name.c_str(),
           static_cast<long long>(config.n_experts), static_cast<long long>(config.n_experts - 1));
    if (named->layer >= config.n_layers)
      fail("%s: tensor '%s' is past the model's %lld layers", input.c_str(), tensor.name.c_str(),
           static_cast<long long>(config.n_layers));
    if (tensor.n_dims != 2)
      fail("%s: tensor '%s' has shape %s; an expert's tensor is a matrix", input.c_str(), tensor.name.c_str(),
           tensor.shape_string().c_str());
    const auto [at, added] = stack_of.try_emplace({named->stacked, named->layer}, stacks.size());
    if (added) {
      order.push_back({stacks.size(), true});
      stacks.push_back({named->stacked, named->layer, std::vector<const TensorInfo*>(experts, nullptr)});
    }
    // One tensor per slot: the file's names are distinct and an expert has one spelling.
    stacks[at->second].experts[static_cast<size_t>(named->expert)] = &tensor;
  }
  if (stacks.empty()) fail("%s: no experts stored one tensor each (blk.N.ffn_gate.E.weight); nothing to stack", input.c_str());
  if (already_stacked)
    fail("%s: tensor '%s' is stacked beside experts stored one tensor each; stack all or none", input.c_str(),
         already_stacked->name.c_str());

  // Every layer's every projection: a layer without one would stack into a file that cannot load.
  for (int64_t layer = 0; layer < config.n_layers; ++layer)
    for (size_t r = 0; r < kRoleCount; ++r) {
      const auto role = static_cast<Role>(r);
      if (role_spec(role).slices == Dim::Experts && config.arch->presence(role) != Presence::Absent &&
          !stack_of.count({role, layer}))
        fail("%s: tensor '%s' is missing (%llu experts per layer)", input.c_str(),
             per_expert_tensor_name(role, layer, 0).c_str(), static_cast<unsigned long long>(experts));
    }
  StackedExperts result;
  for (const Stack& stack : stacks) {
    for (size_t e = 0; e < stack.experts.size(); ++e)
      if (!stack.experts[e])
        fail("%s: tensor '%s' is missing (%llu experts per layer)", input.c_str(),
             per_expert_tensor_name(stack.role, stack.layer, static_cast<int64_t>(e)).c_str(),
             static_cast<unsigned long long>(experts));
    const TensorInfo* first = stack.experts.front();
    for (const TensorInfo* tensor : stack.experts) {
      if (tensor->type != first->type || tensor->shape != first->shape)
        fail("%s: tensor '%s' is %s %s but '%s' is %s %s: one layer's experts must share type and shape to be stacked",
             input.c_str(), tensor->name.c_str(), type_name(tensor->type), tensor->shape_string().c_str(),
             first->name.c_str(), type_name(first->type), first->shape_string().c_str());
    }
    result.expert_tensors += static_cast<int64_t>(stack.experts.size());
  }
  result.stacked_tensors = static_cast<int64_t>(stacks.size());

  struct statvfs space {};
  if (statvfs(directory_of(output).c_str(), &space) == 0 &&
      static_cast<uint64_t>(space.f_bavail) * space.f_frsize < file.file_size())
    fail("%s: %llu bytes free, the stacked copy needs about %llu", directory_of(output).c_str(),
         static_cast<unsigned long long>(static_cast<uint64_t>(space.f_bavail) * space.f_frsize),
         static_cast<unsigned long long>(file.file_size()));
  GgufWriter writer(written.writing_path(), file.alignment());
  for (const auto& [key, value] : file.metadata())
    if (key != "general.alignment") writer.add_value(key, value);  // the writer states its own
  for (const auto& [index, is_stack] : order) {
    if (!is_stack) {
      const TensorInfo& tensor = *kept[index];
      writer.add_tensor(tensor.name, tensor.type,
                        std::vector<uint64_t>(tensor.shape.begin(), tensor.shape.begin() + tensor.n_dims));
      continue;
    }
    const Stack& stack = stacks[index];
    const TensorInfo& first = *stack.experts.front();
    writer.add_tensor(tensor_name(stack.role, stack.layer), first.type, {first.shape[0], first.shape[1], experts});
  }
  writer.begin_data();
  const DirectFile in(input, false);
  std::vector<uint8_t> buffer(16 << 20);
  for (const auto& [index, is_stack] : order) {
    if (!is_stack) {
      copy_range(in, kept[index]->file_offset, kept[index]->bytes, buffer, writer, stop);
      continue;
    }
    for (const TensorInfo* expert : stacks[index].experts)
      copy_range(in, expert->file_offset, expert->bytes, buffer, writer, stop);
  }
  writer.finish();
  result.output_bytes = written.complete();
  return result;
}

}  // namespace fi
