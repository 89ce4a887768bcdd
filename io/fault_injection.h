#pragma once
// Read faults injected on purpose, so tests (and anyone reproducing a report) can see what a bad
// disk does to a run: FLEXINFER_INJECT_IO_FAULT="KIND@OFFSET[,KIND@OFFSET...]", where KIND is
//   eio    every read covering OFFSET fails with EIO,
//   short  the first read covering OFFSET returns only part of what was asked,
//   eintr  the first read covering OFFSET is interrupted (EINTR).
// Both the pread and the io_uring backends consult it; without the variable it costs one branch.
#include <cstdint>

namespace fi {

enum class InjectedFault { None, IoError, ShortRead, Interrupted };

// The fault to apply to a read of [offset, offset + bytes), consuming one-shot faults.
InjectedFault take_injected_fault(uint64_t offset, uint64_t bytes);

}  // namespace fi
