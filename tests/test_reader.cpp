// The asynchronous reader under every backend, and the prefetcher's ring on top of it: the right
// bytes for unaligned tensor ranges (read through their covering aligned span), fallbacks where
// O_DIRECT or io_uring are unavailable, and clear errors for a file that shrank.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <cstring>
#include <memory>
#include <random>
#include <set>

#include "host/memory/prefetcher.h"
#include "io/async_reader.h"
#include "io/error.h"
#include "test_support.h"

namespace fi {
namespace {

uint8_t pattern(uint64_t i) { return static_cast<uint8_t>((i * 2654435761u) >> 13); }

std::string pattern_file(const std::string& path, uint64_t size) {
  std::vector<uint8_t> bytes(size);
  for (uint64_t i = 0; i < size; ++i) bytes[i] = pattern(i);
  test::write_bytes(path, bytes);
  return path;
}

struct AlignedBuffer {
  explicit AlignedBuffer(uint64_t bytes)
      : data(static_cast<uint8_t*>(std::aligned_alloc(kDirectAlignment, align_up(bytes, kDirectAlignment))), &std::free) {}
  std::unique_ptr<uint8_t, decltype(&std::free)> data;
};

const IoBackend kBackends[] = {IoBackend::Auto, IoBackend::Uring, IoBackend::Pread, IoBackend::Mmap};

class ReaderTest : public ::testing::TestWithParam<IoBackend> {};

// Many unaligned ranges in flight at once, each read as its covering aligned span.
void check_unaligned_ranges(const std::string& path, IoBackend backend) {
  const uint64_t size = std::filesystem::file_size(path);
  const auto reader = AsyncReader::open(path, {backend, 4, 16 << 10});
  std::mt19937_64 rng(5);
  struct Range {
    uint64_t begin, end, span_begin;
    AlignedBuffer buffer;
  };
  std::vector<std::unique_ptr<Range>> ranges;
  for (int i = 0; i < 40; ++i) {
    uint64_t begin = rng() % size, end = std::min(size, begin + 1 + rng() % (200 << 10));
    if (i == 0) end = size;  // the file's tail, inside a partial last page
    const uint64_t span_begin = align_down(begin, kDirectAlignment), span_end = align_up(end, kDirectAlignment);
    ranges.push_back(std::make_unique<Range>(Range{begin, end, span_begin, AlignedBuffer(span_end - span_begin)}));
    reader->submit({ranges.back()->buffer.data.get(), span_begin, span_end - span_begin, static_cast<uint64_t>(i)});
  }
  std::set<uint64_t> returned;
  while (reader->outstanding() > 0) returned.insert(reader->wait());
  EXPECT_EQ(returned.size(), ranges.size());
  for (const auto& r : ranges)
    for (uint64_t i = r->begin; i < r->end; ++i)
      ASSERT_EQ(r->buffer.data.get()[i - r->span_begin], pattern(i)) << "offset " << i << " via " << io_backend_name(backend);
}

TEST_P(ReaderTest, UnalignedRangesReadThroughTheirAlignedSpan) {
  const std::string path = pattern_file(test::scratch_path("reader.bin"), (3 << 20) + 1234);
  check_unaligned_ranges(path, GetParam());
}

TEST_P(ReaderTest, FileInSharedMemory) {
  if (access("/dev/shm", W_OK) != 0) GTEST_SKIP() << "/dev/shm is not writable here";
  const std::string path = "/dev/shm/flexinfer-reader-" + std::to_string(getpid()) + ".bin";
  pattern_file(path, (1 << 20) + 77);
  {
    // Older kernels have no O_DIRECT on tmpfs: then the automatic choice is the pread pool.
    const auto reader = AsyncReader::open(path, {GetParam(), 4, 16 << 10});
    if (GetParam() == IoBackend::Auto && !reader->direct()) {
      EXPECT_EQ(reader->backend(), IoBackend::Pread);
    }
  }
  check_unaligned_ranges(path, GetParam());
  unlink(path.c_str());
}

// Scoped environment variable.
struct SetEnv {
  explicit SetEnv(const char* name) : name(name) { setenv(name, "1", 1); }
  ~SetEnv() { unsetenv(name); }
  const char* name;
};

TEST(Reader, FallsBackWithoutDirectIo) {
  const std::string path = pattern_file(test::scratch_path("no-direct.bin"), (2 << 20) + 5);
  const SetEnv no_direct("FLEXINFER_NO_DIRECT_IO");
  const auto reader = AsyncReader::open(path, {IoBackend::Auto, 4, 16 << 10});
  EXPECT_FALSE(reader->direct());
  EXPECT_EQ(reader->backend(), IoBackend::Pread);
  check_unaligned_ranges(path, IoBackend::Auto);
  check_unaligned_ranges(path, IoBackend::Uring);  // forced: io_uring with buffered reads
}

TEST(Reader, FallsBackWithoutIoUring) {
  const std::string path = pattern_file(test::scratch_path("no-uring.bin"), (2 << 20) + 5);
  const SetEnv no_uring("FLEXINFER_NO_URING");
  const auto reader = AsyncReader::open(path, {IoBackend::Auto, 4, 16 << 10});
  EXPECT_EQ(reader->backend(), IoBackend::Pread);
  check_unaligned_ranges(path, IoBackend::Auto);
  EXPECT_THROW(AsyncReader::open(path, {IoBackend::Uring, 4, 16 << 10}), Error) << "forcing what is missing is an error";
}

// (The mmap baseline is left out: a mapping of a shrunk file faults, by design of mmap.)
const IoBackend kReadingBackends[] = {IoBackend::Uring, IoBackend::Pread};

TEST(Reader, AFileThatShrankIsAnErrorNotGarbage) {
  for (IoBackend backend : kReadingBackends) {
    const std::string path = pattern_file(test::scratch_path("shrinks.bin"), 1 << 20);
    const auto reader = AsyncReader::open(path, {backend, 4, 64 << 10});
    ASSERT_EQ(truncate(path.c_str(), 256 << 10), 0);
    AlignedBuffer buffer(512 << 10);
    reader->submit({buffer.data.get(), 512 << 10, 512 << 10, 1});
    try {
      while (reader->outstanding() > 0) reader->wait();
      ADD_FAILURE() << "expected an error from " << io_backend_name(backend);
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find("shrank"), std::string::npos) << error.what();
    }
  }
}

// After a failed read the owner abandons what is in flight and goes on reading with the same reader.
TEST(Reader, AbandonAfterAnErrorLeavesAUsableReader) {
  for (IoBackend backend : kReadingBackends) {
    const std::string path = pattern_file(test::scratch_path("abandon.bin"), 1 << 20);
    const auto reader = AsyncReader::open(path, {backend, 4, 64 << 10});
    ASSERT_EQ(truncate(path.c_str(), 256 << 10), 0);
    AlignedBuffer failing(512 << 10), more(256 << 10);
    reader->submit({failing.data.get(), 512 << 10, 512 << 10, 1});
    reader->submit({more.data.get(), 0, 256 << 10, 2});
    EXPECT_THROW(
        {
          while (reader->outstanding() > 0) reader->wait();
        },
        Error)
        << io_backend_name(backend);
    reader->abandon();
    EXPECT_EQ(reader->outstanding(), 0u) << io_backend_name(backend);
    AlignedBuffer again(64 << 10);
    reader->submit({again.data.get(), 64 << 10, 64 << 10, 3});
    EXPECT_EQ(reader->wait(), 3u) << io_backend_name(backend);
    for (uint64_t i = 0; i < (64 << 10); ++i)
      ASSERT_EQ(again.data.get()[i], pattern((64 << 10) + i)) << io_backend_name(backend);
    // Abandoning with nothing submitted, or with reads in flight, returns.
    reader->abandon();
    reader->submit({again.data.get(), 0, 64 << 10, 4});
    reader->abandon();
    EXPECT_EQ(reader->outstanding(), 0u);
  }
}

TEST_P(ReaderTest, RejectsUnalignedRequests) {
  const std::string path = pattern_file(test::scratch_path("aligned.bin"), 1 << 16);
  const auto reader = AsyncReader::open(path, {GetParam(), 4, 16 << 10});
  AlignedBuffer buffer(1 << 16);
  EXPECT_THROW(reader->submit({buffer.data.get(), 100, 4096, 0}), Error);
  EXPECT_THROW(reader->submit({buffer.data.get() + 1, 0, 4096, 0}), Error);
}

// The ring delivers every unit of a schedule, cycle after cycle, with the right bytes.
TEST_P(ReaderTest, PrefetcherDeliversTheScheduleRepeatedly) {
  const std::string path = pattern_file(test::scratch_path("schedule.bin"), 8 << 20);
  std::mt19937_64 rng(9);
  std::vector<std::vector<ReadSpan>> schedule(5);
  uint64_t slot_bytes = 0;
  for (auto& reads : schedule) {
    uint64_t slot = 0;
    for (int i = 0; i < 1 + static_cast<int>(rng() % 3); ++i) {
      const uint64_t bytes = (1 + rng() % 64) * kDirectAlignment;
      reads.push_back({align_down(rng() % ((8 << 20) - bytes), kDirectAlignment), bytes, slot});
      slot += bytes;
    }
    slot_bytes = std::max(slot_bytes, slot);
  }
  for (int depth : {1, 2, 3}) {
    AlignedBuffer slots(slot_bytes * static_cast<uint64_t>(depth));
    const auto reader = AsyncReader::open(path, {GetParam(), 8, 32 << 10});
    Prefetcher prefetcher(*reader, schedule, {"a", "b", "c", "d", "e"}, slots.data.get(), slot_bytes, depth);
    for (int cycle = 0; cycle < 4; ++cycle)
      for (size_t unit = 0; unit < schedule.size(); ++unit) {
        const uint8_t* slot = prefetcher.acquire(unit);
        for (const ReadSpan& span : schedule[unit])
          for (uint64_t i = 0; i < span.bytes; i += 997)
            ASSERT_EQ(slot[span.slot_offset + i], pattern(span.file_offset + i)) << "depth " << depth << " unit " << unit;
        prefetcher.release();
      }
    EXPECT_THROW(prefetcher.acquire(3), Error) << "units must come in schedule order";
  }
}

TEST(Reader, PrefetcherPassesReadErrorsToCompute) {
  for (IoBackend backend : kReadingBackends) {
    const std::string path = pattern_file(test::scratch_path("prefetch-shrinks.bin"), 4 << 20);
    AlignedBuffer slots(2 << 20);
    const auto reader = AsyncReader::open(path, {backend, 4, 64 << 10});
    ASSERT_EQ(truncate(path.c_str(), 1 << 20), 0);
    Prefetcher prefetcher(*reader, {{{0, 1 << 20, 0}}, {{2 << 20, 1 << 20, 0}}}, {"first", "second"}, slots.data.get(),
                          1 << 20, 2);
    // The failed read may be noticed at either unit, but it must reach compute as an Error.
    EXPECT_THROW(
        {
          prefetcher.acquire(0);
          prefetcher.release();
          prefetcher.acquire(1);
        },
        Error)
        << io_backend_name(backend);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, ReaderTest, ::testing::ValuesIn(kBackends),
                         [](const auto& info) { return std::string(io_backend_name(info.param)); });

TEST(Reader, BackendNames) {
  EXPECT_EQ(parse_io_backend("uring"), IoBackend::Uring);
  EXPECT_EQ(parse_io_backend("mmap"), IoBackend::Mmap);
  EXPECT_FALSE(parse_io_backend("aio").has_value());
}

}  // namespace
}  // namespace fi
