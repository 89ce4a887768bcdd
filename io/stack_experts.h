#pragma once
// Rewrites a GGUF file whose experts are one tensor each ("blk.3.ffn_gate.5.weight", as llama.cpp's
// conversions wrote Mixtral before spring 2024) with each layer's experts stacked into the 3-D
// tensors flexinfer reads ("blk.3.ffn_gate_exps.weight", expert 5 its sixth slice). Every metadata
// value and every other tensor is copied as it is, the experts in expert order, into a GGUF v3 file
// of the input's alignment.
#include <atomic>
#include <cstdint>
#include <string>

#include "io/file.h"

namespace fi {

struct StackedExperts {
  int64_t stacked_tensors = 0;  // 3-D tensors written
  int64_t expert_tensors = 0;   // per-expert tensors they replace
  uint64_t output_bytes = 0;
};

// Writes `output` (through `output` + kUnfinishedSuffix, renamed at the end, so an interrupted run
// leaves no partial file under that name). Throws Error naming the file and tensor for anything it
// cannot stack: a model it cannot describe, no per-expert tensors, a missing expert (or a layer's
// projection with none),
// experts of one layer differing in type or shape, the input as output, an output that is not a
// regular file, too little disk space, a failed read or write (the temporary file is removed).
// `stop`, when it becomes true, ends the copy between two pieces with an Error (the temporary
// file removed).
StackedExperts stack_experts(const std::string& input, const std::string& output,
                             const std::atomic<bool>* stop = nullptr);

}  // namespace fi
