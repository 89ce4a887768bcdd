#pragma once
// Rewrites a GGUF file whose experts are one tensor each ("blk.3.ffn_gate.5.weight", as llama.cpp's
// conversions wrote Mixtral before spring 2024) with each layer's experts stacked into the 3-D
// tensors flexinfer reads ("blk.3.ffn_gate_exps.weight", expert 5 its sixth slice). Metadata and
// every other tensor are copied byte for byte; so are the experts, in expert order.
#include <cstdint>
#include <string>

namespace fi {

struct StackedExperts {
  int64_t stacked_tensors = 0;  // 3-D tensors written
  int64_t expert_tensors = 0;   // per-expert tensors they replace
  uint64_t output_bytes = 0;
};

// Writes `output` (through a temporary file beside it, renamed at the end, so an interrupted run
// leaves no partial file under that name). Throws Error naming the file and tensor for anything it
// cannot stack: no per-expert tensors, a missing expert, experts of one layer differing in type or
// shape, the input as output, too little disk space.
StackedExperts stack_experts(const std::string& input, const std::string& output);

}  // namespace fi
