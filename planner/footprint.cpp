#include "planner/footprint.h"

#include "io/architecture.h"

namespace fi {

uint64_t ModelFootprint::total() const {
  uint64_t sum = embedding_bytes + output_bytes + other_bytes;
  for (const Layer& layer : layers) sum += layer.total();
  return sum;
}

ModelFootprint ModelFootprint::of(const TensorTable& table) {
  constexpr int64_t kMaxLayers = 65536;  // a name's layer number is the file's word only up to here
  ModelFootprint footprint;
  for (const TensorInfo& tensor : table.all()) {
    const auto named = parse_tensor_name(tensor.name);
    if (!named || named->layer >= kMaxLayers) {
      footprint.other_bytes += tensor.bytes;
      continue;
    }
    const RoleSpec& spec = role_spec(named->role);
    if (named->layer < 0) {
      if (spec.group == RoleGroup::Embedding) footprint.embedding_bytes += tensor.bytes;
      else if (spec.group == RoleGroup::Output) footprint.output_bytes += tensor.bytes;
      else footprint.other_bytes += tensor.bytes;
      continue;
    }
    if (footprint.layers.size() <= static_cast<size_t>(named->layer)) footprint.layers.resize(static_cast<size_t>(named->layer) + 1);
    Layer& layer = footprint.layers[static_cast<size_t>(named->layer)];
    footprint.by_group[std::string(spec.name) + (std::string(spec.suffix) == "bias" ? ".bias" : "")] += tensor.bytes;
    if (spec.group == RoleGroup::Norm) layer.norm_bytes += tensor.bytes;
    else if (spec.group == RoleGroup::Attention) layer.attention_bytes += tensor.bytes;
    else layer.ffn_bytes += tensor.bytes;
  }
  return footprint;
}

}  // namespace fi
