#pragma once
// Tensor tables of real model shapes (7b, 13b, 70b) laid out as a GGUF writer would, for planner
// tests that need no model bytes.
#include <string>
#include <vector>

#include "io/direct_file.h"
#include "io/tensor_table.h"
#include "planner/plan.h"

namespace fi::test {

struct Shape {
  const char* name;
  uint64_t dim, ffn, layers, kv, vocab;
  TensorType matrices, output;
};

inline TensorTable model_table(const Shape& s) {
  std::vector<TensorInfo> tensors;
  uint64_t offset = 4096 + 704;  // an unaligned start, as after a real header
  auto add = [&](const std::string& name, TensorType type, uint64_t cols, uint64_t rows) {
    TensorInfo t;
    t.name = name;
    t.type = type;
    t.n_dims = rows > 1 ? 2 : 1;
    t.shape = {cols, rows, 1, 1};
    t.file_offset = offset;
    t.bytes = row_bytes(type, cols) * rows;
    offset = align_up(offset + t.bytes, 32);
    tensors.push_back(t);
  };
  add("token_embd.weight", s.matrices, s.dim, s.vocab);
  for (uint64_t l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", TensorType::F32, s.dim, 1);
    add(p + "attn_q.weight", s.matrices, s.dim, s.dim);
    add(p + "attn_k.weight", s.matrices, s.dim, s.kv);
    add(p + "attn_v.weight", s.matrices, s.dim, s.kv);
    add(p + "attn_output.weight", s.matrices, s.dim, s.dim);
    add(p + "ffn_norm.weight", TensorType::F32, s.dim, 1);
    add(p + "ffn_gate.weight", s.matrices, s.dim, s.ffn);
    add(p + "ffn_up.weight", s.matrices, s.dim, s.ffn);
    add(p + "ffn_down.weight", s.matrices, s.ffn, s.dim);
  }
  add("output_norm.weight", TensorType::F32, s.dim, 1);
  add("output.weight", s.output, s.dim, s.vocab);
  return TensorTable(std::move(tensors));
}

// The layers in the engine's preservation order, then the output head.
inline std::vector<PlanInput::Unit> model_units(const TensorTable& table, uint64_t layers) {
  std::vector<PlanInput::Unit> units;
  for (uint64_t l = 0; l < layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    PlanInput::Unit unit{"blk." + std::to_string(l), {}};
    for (const char* name : {"attn_k", "attn_v", "attn_q", "attn_output", "ffn_gate", "ffn_up", "ffn_down"})
      unit.matrices.push_back(table.find(p + name + ".weight"));
    units.push_back(unit);
  }
  units.push_back({"output", {table.find("output.weight")}});
  return units;
}

}  // namespace fi::test
