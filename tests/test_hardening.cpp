// What a run survives: hostile model files given to every command, read faults injected at chosen
// offsets, a model file truncated while in use, Ctrl-C, and a memory cgroup of the budget.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/engine/host_model.h"
#include "host/trace/trace.h"
#include "io/error.h"
#include "io/file.h"
#include "test_support.h"

namespace fi {
namespace {

const ModelShape kStreamingShape{256, 4, 8, 4, 768, 2048, 0, 10000.0, false};

std::string streaming_model() { return test::generated_model("hardening", kStreamingShape, WeightScheme::Q4_0); }

std::string experts_model() {
  const ModelShape experts{256, 2, 4, 2, 256, 256, 0, 10000.0, false, "qwen3moe", 64, {}, false, 16, 2, 128, 1.0};
  return test::generated_model("hardening_experts", experts, WeightScheme::Q4_0);
}

uint64_t minimum_budget(const std::string& model, int64_t context) {
  ThreadPool pool(2);
  HostModelOptions options;
  options.model.context = context;
  return HostModel::load(model, pool, options)->plan().minimum_host_bytes;
}

// Waits until the file at `path` holds at least `bytes` (one size query each time: with two, the
// file could be missing for the first and empty for the second) or `limit` has passed.
bool wait_for_bytes(const std::string& path, uintmax_t bytes, std::chrono::seconds limit) {
  auto reached = [&] {
    std::error_code missing;
    const uintmax_t size = std::filesystem::file_size(path, missing);
    return !missing && size >= bytes;
  };
  const auto start = std::chrono::steady_clock::now();
  while (!reached() && std::chrono::steady_clock::now() - start < limit)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return reached();
}

// Exit 1 and, as the last line of stderr, one error line (a streaming run may have said where its
// weights live before the fault).
void expect_one_line_failure(const test::CommandResult& result, const std::string& what, bool only_line = true) {
  EXPECT_EQ(result.exit_code, 1) << what << ": " << result.err;
  const size_t last = result.err.rfind('\n', result.err.size() - 2);
  const std::string last_line = result.err.substr(last == std::string::npos ? 0 : last + 1);
  EXPECT_EQ(last_line.rfind("flexinfer: error: ", 0), 0u) << what << ": " << result.err;
  if (only_line) {
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << what << ": " << result.err;
  }
  EXPECT_LT(result.seconds, 10.0) << what;
}

void patch_u64(std::vector<uint8_t>& bytes, size_t at, uint64_t value) { std::memcpy(&bytes[at], &value, 8); }

// Every command refuses each hostile variant of a real model file: one line, exit 1, no signal
// death, within seconds, and inside an address space far smaller than the absurd sizes claimed.
TEST(Hardening, HostileFilesAreRefusedByEveryCommand) {
  const std::vector<uint8_t> good = test::read_bytes(streaming_model());
  // The first tensor info follows its name: n_dims (u32), dims (u64 each), type (u32), offset (u64).
  const std::string name = "token_embd.weight";
  const auto found = std::search(good.begin(), good.end(), name.begin(), name.end());
  ASSERT_NE(found, good.end());
  const size_t info = static_cast<size_t>(found - good.begin()) + name.size();
  const size_t dim0 = info + 4, type = info + 4 + 16, offset = type + 4;

  std::vector<std::pair<std::string, std::vector<uint8_t>>> variants;
  for (size_t cut : {size_t{3}, size_t{20}, size_t{100}, info, good.size() / 3, good.size() - 4096}) {
    variants.emplace_back("truncated at " + std::to_string(cut), std::vector<uint8_t>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut)));
  }
  auto variant = [&](const std::string& what, auto&& change) {
    std::vector<uint8_t> bytes = good;
    change(bytes);
    variants.emplace_back(what, std::move(bytes));
  };
  variant("wrong magic", [](auto& b) { b[0] = 'X'; });
  variant("version 99", [](auto& b) { b[4] = 99; });
  variant("absurd tensor count", [](auto& b) { patch_u64(b, 8, 1ull << 40); });
  variant("absurd metadata count", [](auto& b) { patch_u64(b, 16, UINT64_MAX); });
  variant("absurd key length", [](auto& b) { patch_u64(b, 24, 1ull << 62); });
  variant("absurd dimension", [&](auto& b) { patch_u64(b, dim0, 1ull << 40); });
  variant("unknown tensor type", [&](auto& b) { b[type] = 16; });
  variant("offset past the end", [&](auto& b) { patch_u64(b, offset, 1ull << 50); });
  variant("overlapping tensors", [&](auto& b) {
    // Point the second tensor at the first one's data.
    const std::string second = "blk.0.attn_norm.weight";
    const auto at = std::search(b.begin(), b.end(), second.begin(), second.end());
    const size_t second_offset = static_cast<size_t>(at - b.begin()) + second.size() + 4 + 8 + 4;
    uint64_t first;
    std::memcpy(&first, &b[offset], 8);
    patch_u64(b, second_offset, first);
  });

  const std::string path = test::scratch_path("hostile.gguf");
  test::RunOptions limited;
  limited.address_space_limit = 1ull << 30;
  for (const auto& [what, bytes] : variants) {
    test::write_bytes(path, bytes);
    for (const std::vector<std::string>& command :
         std::vector<std::vector<std::string>>{{"generate", "-m", path, "-n", "4", "--temp", "0"},
                                               {"generate", "-m", path, "-n", "4", "--host-mem", "64M", "--ctx", "64"},
                                               {"logits", "-m", path, "-p", "x", "-o", test::scratch_path("hostile.f32")},
                                               {"tokenize", "-m", path, "-p", "x"},
                                               {"inspect", path},
                                               {"plan", "-m", path, "--host-mem", "1G"},
                                               {"bench", "-m", path, "-p", "2", "-n", "2"}}) {
      expect_one_line_failure(test::run_flexinfer(command, limited), what + " / " + command[0]);
    }
  }
}

std::vector<std::string> greedy(const std::string& model, uint64_t budget, const std::string& io) {
  return {"generate", "-m", model, "-p", "hello", "-n", "24", "--temp", "0", "-t", "2", "--ctx", "64",
          "--host-mem", std::to_string(budget), "--io", io};
}

// Short reads and interrupted reads are retried: the same text. EIO is one clear line. Dense
// weights streamed by the prefetcher, and experts read on demand into the expert cache.
void expect_read_faults_handled(const std::string& model) {
  const uint64_t budget = minimum_budget(model, 64);
  const uint64_t size = std::filesystem::file_size(model);
  const test::CommandResult clean = test::run_flexinfer(greedy(model, budget, "auto"));
  ASSERT_EQ(clean.exit_code, 0) << clean.err;
  for (const char* io : {"uring", "pread"}) {
    test::RunOptions faults;
    faults.environment = {"FLEXINFER_INJECT_IO_FAULT=short@" + std::to_string(size / 2) + ",eintr@" +
                          std::to_string(size / 3) + ",short@" + std::to_string(size - 100)};
    const test::CommandResult retried = test::run_flexinfer(greedy(model, budget, io), faults);
    EXPECT_EQ(retried.exit_code, 0) << io << ": " << retried.err;
    EXPECT_EQ(retried.out, clean.out) << io;

    test::RunOptions broken;
    broken.environment = {"FLEXINFER_INJECT_IO_FAULT=eio@" + std::to_string(size / 2)};
    const test::CommandResult failed = test::run_flexinfer(greedy(model, budget, io), broken);
    expect_one_line_failure(failed, std::string("EIO via ") + io, false);
    EXPECT_NE(failed.err.find("Input/output error"), std::string::npos) << failed.err;
  }
  test::RunOptions nonsense;
  nonsense.environment = {"FLEXINFER_INJECT_IO_FAULT=flood@1"};
  expect_one_line_failure(test::run_flexinfer(greedy(model, budget, "auto"), nonsense), "bad fault spec");
}

TEST(Hardening, InjectedReadFaults) { expect_read_faults_handled(streaming_model()); }

TEST(Hardening, InjectedReadFaultsInExpertsReadOnDemand) {
  const std::string model = experts_model();
  ThreadPool pool(2);
  HostModelOptions options;
  options.model.context = 64;
  options.host_budget = minimum_budget(model, 64);
  ASSERT_TRUE(HostModel::load(model, pool, options)->plan().caches_experts());
  expect_read_faults_handled(model);
}

// A model file cut short while a streaming run uses it: an error, never wrong logits. Once the
// file is whole again, the same engine goes on as if the failed passes had not been tried.
void expect_truncation_survived(const std::string& original) {
  const std::string copy = test::scratch_path("truncated-while-running.gguf");
  std::filesystem::copy_file(original, copy, std::filesystem::copy_options::overwrite_existing);
  const int32_t tokens[] = {5, 9};
  for (IoBackend backend : {IoBackend::Uring, IoBackend::Pread}) {
    SCOPED_TRACE(io_backend_name(backend));
    ThreadPool pool(2);
    HostModelOptions options;
    options.model.context = 64;
    options.host_budget = minimum_budget(copy, 64);
    options.io.backend = backend;
    const auto model = HostModel::load(copy, pool, options);
    Forward forward(model->model(), make_cpu_backend(*model, pool));
    std::vector<float> logits(static_cast<size_t>(model->config().vocab));
    forward.eval(std::span<const int32_t>(&tokens[0], 1), logits.data());
    ASSERT_EQ(::truncate(copy.c_str(), static_cast<off_t>(std::filesystem::file_size(copy) / 3)), 0);
    try {
      for (int i = 0; i < 4; ++i) forward.eval(std::span<const int32_t>(&tokens[1], 1), logits.data());
      ADD_FAILURE() << "reads past the new end must fail";
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find("shrank"), std::string::npos) << error.what();
    }
    std::filesystem::copy_file(original, copy, std::filesystem::copy_options::overwrite_existing);
    forward.eval(std::span<const int32_t>(&tokens[1], 1), logits.data());

    const auto fresh_model = HostModel::load(copy, pool, options);
    Forward fresh(fresh_model->model(), make_cpu_backend(*fresh_model, pool));
    std::vector<float> expected(logits.size());
    fresh.eval(std::span<const int32_t>(tokens), expected.data());
    EXPECT_EQ(logits, expected);
  }
}

TEST(Hardening, ModelTruncatedWhileInUse) { expect_truncation_survived(streaming_model()); }

TEST(Hardening, ModelTruncatedWhileItsExpertsAreReadOnDemand) { expect_truncation_survived(experts_model()); }

// Ctrl-C during generation: what was generated is printed, the run ends cleanly, exit 130.
TEST(Hardening, InterruptStopsCleanly) {
  const std::string out = test::scratch_path("interrupt.out"), err = test::scratch_path("interrupt.err");
  const std::string trace = test::scratch_path("interrupt-trace.json");
  const std::string model = streaming_model();
  const std::string budget = std::to_string(minimum_budget(model, 2048));
  const pid_t pid = test::start_flexinfer(
      {"generate", "-m", model, "-n", "2000", "--ctx", "2048", "--host-mem", budget, "-t", "2", "--trace", trace}, out, err);
  // Wait for the first generated text, then interrupt.
  wait_for_bytes(out, 1, std::chrono::seconds(30));
  ::kill(pid, SIGINT);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_GT(std::filesystem::file_size(out), 0u);
  const std::string messages = test::read_bytes_as_text(err);
  EXPECT_NE(messages.find("interrupted"), std::string::npos) << messages;
  // The trace of the interrupted run is complete JSON.
  const nlohmann::json spans = nlohmann::json::parse(test::read_bytes_as_text(trace), nullptr, false);
  ASSERT_TRUE(spans.is_array()) << "the trace does not parse";
  EXPECT_GT(spans.size(), 4u);
}

// make-model owns its unfinished file while it writes: a second run given the same path is refused
// at once, and an interrupt (SIGINT or SIGTERM) ends the first with 130, leaving neither file behind.
TEST(Hardening, MakeModelRefusesASecondWriterAndStopsOnInterrupt) {
  const std::string path = test::scratch_path("interrupted-model.gguf");
  const std::string unfinished = path + kUnfinishedSuffix, err = test::scratch_path("interrupted-model.err");
  std::filesystem::remove(path);
  std::filesystem::remove(unfinished);
  for (const int signal : {SIGINT, SIGTERM}) {
    SCOPED_TRACE(strsignal(signal));
    const pid_t pid = test::start_flexinfer(
        {"make-model", "--preset", "1b", "--type", "f16", "--byte-vocab", "-t", "1", "-o", path}, "/dev/null", err);
    EXPECT_TRUE(wait_for_bytes(unfinished, 1, std::chrono::seconds(60))) << "the first run never started writing";

    const test::CommandResult second =
        test::run_flexinfer({"make-model", "--preset", "tiny", "--type", "q4_0", "--byte-vocab", "-o", path});
    EXPECT_NE(second.exit_code, 0);
    EXPECT_NE(second.err.find("another run is writing"), std::string::npos) << second.err;

    ::kill(pid, signal);
    int status = 0;
    const auto stopping = std::chrono::steady_clock::now();
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() - stopping > std::chrono::seconds(60)) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        FAIL() << "make-model did not stop within 60 s of the signal";
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), 130) << test::read_bytes_as_text(err);
    EXPECT_FALSE(std::filesystem::exists(path));
    EXPECT_FALSE(std::filesystem::exists(unfinished));
  }
}

// A run killed outright leaves a trace that ends after a whole span: with the closing bracket the
// viewers do without added, it parses.
TEST(Hardening, AKilledRunLeavesATraceOfWholeSpans) {
  const std::string trace = test::scratch_path("killed-trace.json");
  const std::string model = streaming_model();
  const std::string budget = std::to_string(minimum_budget(model, 2048));
  const pid_t pid = test::start_flexinfer({"generate", "-m", model, "-n", "2000", "--ctx", "2048", "--host-mem", budget, "-t",
                                     "2", "--ignore-eos", "--trace", trace},
                                    "/dev/null", "/dev/null");
  // Until spans beyond the header have reached the file.
  wait_for_bytes(trace, 64u << 10, std::chrono::seconds(60));
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run ended before it was killed";
  const std::string text = test::read_bytes_as_text(trace);
  ASSERT_GE(text.size(), 64u << 10) << "no spans were written while it ran";
  const nlohmann::json spans = nlohmann::json::parse(text + "\n]", nullptr, false);
  ASSERT_TRUE(spans.is_array()) << "the trace ends inside a span: ..." << text.substr(text.size() - 120);
  EXPECT_GT(spans.size(), 100u);
}

// A kill may cut a write() short where the kernel's copy reaches the next page of the file: a
// trace cut at any page boundary still parses as whole spans (names of every length, so that
// spans fall across boundaries unless placed after them).
TEST(Hardening, ATraceCutAtAnyPageOfItsFileHoldsWholeSpans) {
  const std::string path = test::scratch_path("paged-trace.json");
  {
    Trace trace(path);
    for (int i = 0; i < 4000; ++i)
      trace.add_microseconds(Trace::Track::Cpu, "span " + std::string(static_cast<size_t>(i % 97), 'x'), i, i + 0.5);
    trace.finish();
  }
  const std::string text = test::read_bytes_as_text(path);
  const nlohmann::json whole = nlohmann::json::parse(text, nullptr, false);
  ASSERT_TRUE(whole.is_array());
  EXPECT_EQ(whole.size(), 4u + 4000u) << "four track names, then every span";
  ASSERT_GT(text.size(), 64u * 4096u);
  for (size_t cut = 4096; cut < text.size(); cut += 4096) {
    const nlohmann::json spans = nlohmann::json::parse(text.substr(0, cut) + "\n]", nullptr, false);
    ASSERT_TRUE(spans.is_array()) << "cut at " << cut << ": ..." << text.substr(cut - 100, 100);
  }
}

// A memory cgroup of its own for a test (v1's memory controller or v2), removed at the end;
// `available` is false where none can be made (not root, no writable controller).
class MemoryCgroup {
 public:
  explicit MemoryCgroup(uint64_t limit) {
    std::string limit_file;
    if (::geteuid() == 0 && ::access("/sys/fs/cgroup/memory", W_OK) == 0) {
      dir_ = "/sys/fs/cgroup/memory/flexinfer-test-" + std::to_string(::getpid()) + "-" + std::to_string(serial_++);
      limit_file = "memory.limit_in_bytes";
      peak_file_ = "memory.max_usage_in_bytes";
    } else if (::geteuid() == 0 && ::access("/sys/fs/cgroup/cgroup.subtree_control", W_OK) == 0) {
      dir_ = "/sys/fs/cgroup/flexinfer-test-" + std::to_string(::getpid()) + "-" + std::to_string(serial_++);
      limit_file = "memory.max";
      peak_file_ = "memory.peak";
    }
    if (dir_.empty() || ::mkdir(dir_.c_str(), 0755) != 0) {
      dir_.clear();
      return;
    }
    std::ofstream(dir_ + "/" + limit_file) << limit;
  }
  ~MemoryCgroup() {
    if (!dir_.empty()) ::rmdir(dir_.c_str());
  }
  bool available() const { return !dir_.empty(); }
  test::RunOptions inside() const {
    test::RunOptions options;
    options.cgroup_procs = dir_ + "/cgroup.procs";
    return options;
  }
  uint64_t peak() const {
    uint64_t bytes = 0;
    std::ifstream(dir_ + "/" + peak_file_) >> bytes;
    return bytes;
  }

 private:
  static inline int serial_ = 0;
  std::string dir_, peak_file_;
};

// 58 MB of Q4_0 weights: more than the cgroups below hold.
std::string cgroup_model() {
  return test::generated_model("cgroup", {1024, 8, 16, 8, 2816, 2048, 0, 10000.0, false}, WeightScheme::Q4_0);
}

// Generation under --host-mem inside a memory cgroup of the budget plus a small slack: the budget
// is real, not a wish. Needs root and a writable memory controller.
TEST(Hardening, RunsInsideAMemoryCgroupOfTheBudget) {
#ifdef FLEXINFER_SANITIZED
  GTEST_SKIP() << "AddressSanitizer's shadow memory and its 220 MB binary's page cache count against the cgroup's "
                  "16 MiB of slack (the plain build runs this test)";
#endif
  const std::string model = cgroup_model();
  const uint64_t minimum = minimum_budget(model, 64);
  const uint64_t budget = minimum + (std::filesystem::file_size(model) - minimum) / 2;  // about half resident
  constexpr uint64_t kSlack = 16ull << 20;  // kernel memory and the binary's page cache
  const MemoryCgroup cgroup(budget + kSlack);
  if (!cgroup.available()) GTEST_SKIP() << "no writable memory cgroup here (needs root)";
  const std::vector<std::string> command = greedy(model, budget, "auto");
  const test::CommandResult inside = test::run_flexinfer(command, cgroup.inside());
  const test::CommandResult outside = test::run_flexinfer(command);
  std::printf("cgroup: budget %llu bytes, limit %llu, peak usage %llu\n", static_cast<unsigned long long>(budget),
              static_cast<unsigned long long>(budget + kSlack), static_cast<unsigned long long>(cgroup.peak()));
  EXPECT_EQ(inside.exit_code, 0) << inside.err;
  EXPECT_EQ(inside.out, outside.out);
  EXPECT_NE(inside.err.find("streamed per token"), std::string::npos) << "the budget must make it stream";
}

// Without --host-mem a model larger than the memory cgroup streams within the cgroup's room
// instead of being killed: the budget is chosen from the cgroup's limit and stays under it.
TEST(Hardening, WithoutABudgetALargerModelStreamsWithinTheCgroup) {
#ifdef FLEXINFER_SANITIZED
  GTEST_SKIP() << "AddressSanitizer's shadow memory counts against the cgroup, leaving less than the plan's minimum";
#endif
  const std::string model = cgroup_model();
  const uint64_t minimum = minimum_budget(model, 64);
  const uint64_t limit = minimum + (std::filesystem::file_size(model) - minimum) / 2 + (24ull << 20);
  const MemoryCgroup cgroup(limit);
  if (!cgroup.available()) GTEST_SKIP() << "no writable memory cgroup here (needs root)";
  const test::CommandResult inside =
      test::run_flexinfer({"generate", "-m", model, "-p", "Once", "-n", "8", "--temp", "0", "--ctx", "64"}, cgroup.inside());
  const test::CommandResult outside =
      test::run_flexinfer({"generate", "-m", model, "-p", "Once", "-n", "8", "--temp", "0", "--ctx", "64"});
  std::printf("cgroup: limit %llu, peak usage %llu\n", static_cast<unsigned long long>(limit),
              static_cast<unsigned long long>(cgroup.peak()));
  EXPECT_EQ(inside.exit_code, 0) << inside.err;
  EXPECT_EQ(inside.out, outside.out) << "streaming never changes the tokens";
  EXPECT_NE(inside.err.find("memory cgroup"), std::string::npos) << "it says why: " << inside.err;
  EXPECT_NE(inside.err.find("streamed per token"), std::string::npos) << inside.err;
  EXPECT_NE(outside.err.find("every weight in RAM"), std::string::npos) << outside.err;
  EXPECT_LE(cgroup.peak(), limit);
}

}  // namespace
}  // namespace fi
