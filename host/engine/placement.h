#pragma once
// The planners' view of a model on this machine's devices: its units (the layers in compute order,
// then the output head), each unit's matrices in the architecture's preservation order, the small
// tensors that never stream, and the fixed costs each backend allocates besides the weights.
#include <cstdint>
#include <optional>

#include "host/model/model.h"
#include "planner/plan.h"
#include "planner/tier_plan.h"

namespace fi {

// What the CPU computes: the whole model, or the expert halves of a mixture-of-experts model's
// layers (in_expert_half) while a GPU computes the rest and holds the KV cache.
enum class HostPart : uint8_t { Whole, ExpertHalves };

// Host memory only: every layer (or every expert half) computes on the CPU.
PlanInput host_plan_input(const Model& model, std::optional<uint64_t> host_budget, int threads,
                          HostPart part = HostPart::Whole);

// Three tiers: the same units, the GPU backend's fixed device costs (without weights and KV
// cache), the host's fixed costs without the KV cache (a layer's cache lives where it decodes).
TierInput tier_input(const Model& model, std::optional<uint64_t> host_budget, int threads, uint64_t gpu_budget);

}  // namespace fi
