#include "planner/footprint.h"

#include <charconv>

namespace fi {

uint64_t ModelFootprint::total() const {
  uint64_t sum = embedding_bytes + output_bytes + other_bytes;
  for (const Layer& layer : layers) sum += layer.total();
  return sum;
}

ModelFootprint ModelFootprint::of(const TensorTable& table) {
  ModelFootprint footprint;
  for (const TensorInfo& tensor : table.all()) {
    const std::string& name = tensor.name;
    if (name.rfind("blk.", 0) == 0) {
      const size_t dot = name.find('.', 4);
      size_t layer = 0;
      const auto parsed = std::from_chars(name.data() + 4, name.data() + (dot == std::string::npos ? 4 : dot), layer);
      if (dot != std::string::npos && parsed.ec == std::errc() && layer < 65536) {
        if (footprint.layers.size() <= layer) footprint.layers.resize(layer + 1);
        const size_t suffix = name.find('.', dot + 1);
        const std::string group = name.substr(dot + 1, suffix == std::string::npos ? std::string::npos : suffix - dot - 1);
        footprint.by_group[group] += tensor.bytes;
        Layer& entry = footprint.layers[layer];
        if (group.rfind("attn_norm", 0) == 0 || group.rfind("ffn_norm", 0) == 0) entry.norm_bytes += tensor.bytes;
        else if (group.rfind("attn_", 0) == 0) entry.attention_bytes += tensor.bytes;
        else if (group.rfind("ffn_", 0) == 0) entry.ffn_bytes += tensor.bytes;
        else footprint.other_bytes += tensor.bytes;
        continue;
      }
    }
    if (name == "token_embd.weight") footprint.embedding_bytes += tensor.bytes;
    else if (name == "output.weight" || name == "output_norm.weight") footprint.output_bytes += tensor.bytes;
    else footprint.other_bytes += tensor.bytes;
  }
  return footprint;
}

}  // namespace fi
