#include "test_support.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "host/kernels/thread_pool.h"

namespace fi::test {

std::string shared_data() {
  struct stat info {};
  // FLEXINFER_SHARED_DATA in the environment: a copy elsewhere (a GPU machine has no ../shared).
  const char* moved = std::getenv("FLEXINFER_SHARED_DATA");
  const std::string path = moved ? moved : FLEXINFER_SHARED_DATA;
  return ::stat((path + "/models").c_str(), &info) == 0 ? path : std::string();
}

std::string source_dir() {
  struct stat info {};
  const char* moved = std::getenv("FLEXINFER_SOURCE_DIR");
  for (const std::string& root : {std::string(moved ? moved : ""), std::string(FLEXINFER_SOURCE_DIR), std::string(".")})
    if (!root.empty() && ::stat((root + "/tests/data").c_str(), &info) == 0) return root;
  return FLEXINFER_SOURCE_DIR;
}

std::string scratch_dir() {
  static const std::string dir = [] {
    std::string pattern = (std::getenv("TMPDIR") ? std::string(std::getenv("TMPDIR")) : "/tmp") + "/flexinfer-test-XXXXXX";
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    // Removed when the test process ends (not when a forked child does): runs would fill /tmp.
    static const pid_t owner = ::getpid();
    static const std::string made = pattern;
    std::atexit([] {
      if (::getpid() == owner) std::filesystem::remove_all(made);
    });
    return pattern;
  }();
  return dir;
}

std::string scratch_path(const std::string& name) { return scratch_dir() + "/" + name; }

std::string generated_model(const std::string& name, const ModelShape& shape, WeightScheme scheme, uint64_t seed,
                            const std::vector<TensorTypeOverride>& tensor_types) {
  static std::map<std::string, std::string> made;
  auto it = made.find(name);
  if (it != made.end()) return it->second;
  MakeModelOptions options;
  options.shape = shape;
  options.scheme = scheme;
  options.seed = seed;
  options.tensor_types = tensor_types;
  options.output_path = scratch_path(name + ".gguf");
  ThreadPool pool(2);
  make_model(options, pool);
  made[name] = options.output_path;
  return options.output_path;
}

std::string preset_model(const std::string& preset, const std::string& type) {
  const auto shape = find_preset(preset);
  const auto scheme = parse_weight_scheme(type);
  if (!shape || !scheme) throw std::runtime_error("no preset " + preset + " or type " + type);
  return generated_model(preset + "-" + type, *shape, *scheme, 1);
}

std::string edited_model(const std::string& source_path, const std::string& name, const ModelEdit& edit) {
  const GgufFile source = GgufFile::open(source_path);
  const std::string path = scratch_path(name + ".gguf");
  auto listed = [](const std::vector<std::string>& list, const std::string& item) {
    return std::find(list.begin(), list.end(), item) != list.end();
  };
  GgufWriter writer(path);
  for (const auto& [key, value] : source.metadata())
    if (!listed(edit.drop_keys, key)) writer.add_value(key, value);
  if (edit.add_keys) edit.add_keys(writer);
  std::vector<const TensorInfo*> kept;
  for (const TensorInfo& tensor : source.tensors().all()) {
    if (listed(edit.drop_tensors, tensor.name)) continue;
    writer.add_tensor(tensor.name, tensor.type, std::vector<uint64_t>(tensor.shape.begin(), tensor.shape.begin() + tensor.n_dims));
    kept.push_back(&tensor);
  }
  for (const ModelEdit::Tensor& tensor : edit.add_tensors) writer.add_tensor(tensor.name, tensor.type, tensor.shape);
  writer.begin_data();
  const std::vector<uint8_t> bytes = read_bytes(source_path);
  for (const TensorInfo* tensor : kept) writer.write_data(bytes.data() + tensor->file_offset, tensor->bytes);
  for (const ModelEdit::Tensor& tensor : edit.add_tensors) {
    uint64_t elements = 1;
    for (uint64_t extent : tensor.shape) elements *= extent;
    const std::vector<uint8_t> zeros(row_bytes(tensor.type, elements));
    writer.write_data(zeros.data(), zeros.size());
  }
  writer.finish();
  return path;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string read_bytes_as_text(const std::string& path) {
  const std::vector<uint8_t> bytes = read_bytes(path);
  return std::string(bytes.begin(), bytes.end());
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

namespace {
// In a forked child: the flexinfer binary with these arguments, standard streams redirected
// (stdin left as it is when `in` is empty).
[[noreturn]] void exec_flexinfer(const std::vector<std::string>& arguments, const std::string& in, const std::string& out,
                                 const std::string& err) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(FLEXINFER_BINARY));
  for (const std::string& a : arguments) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  if ((!in.empty() && !std::freopen(in.c_str(), "r", stdin)) || !std::freopen(out.c_str(), "w", stdout) ||
      !std::freopen(err.c_str(), "w", stderr))
    _exit(127);
  ::execv(FLEXINFER_BINARY, argv.data());
  _exit(127);
}
}  // namespace

pid_t start_flexinfer(const std::vector<std::string>& arguments, const std::string& out, const std::string& err) {
  const pid_t pid = ::fork();
  if (pid == 0) exec_flexinfer(arguments, "", out, err);
  return pid;
}

CommandResult run_flexinfer(const std::vector<std::string>& arguments, const RunOptions& options) {
  const std::string out_path = scratch_path("cmd.out"), err_path = scratch_path("cmd.err");
  const std::string in_path = scratch_path("cmd.in");
  {
    std::ofstream in(in_path, std::ios::binary | std::ios::trunc);
    in << options.input;
  }
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (const std::string& variable : options.environment) ::putenv(const_cast<char*>(variable.c_str()));
#ifndef FLEXINFER_SANITIZED  // sanitizers reserve terabytes of address space
    if (options.address_space_limit) {
      const rlimit limit{options.address_space_limit, options.address_space_limit};
      ::setrlimit(RLIMIT_AS, &limit);
    }
#endif
    if (!options.cgroup_procs.empty()) {
      std::ofstream procs(options.cgroup_procs);
      procs << ::getpid() << std::flush;
      if (!procs) _exit(126);
    }
    exec_flexinfer(arguments, in_path, out_path, err_path);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  auto slurp = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  };
  // A signal death is reported as 128 + signal, as a shell would.
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return {code, slurp(out_path), slurp(err_path),
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()};
}

double relative_rms(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return a.size() == b.size() && den > 0 ? std::sqrt(num / den) : INFINITY;
}

}  // namespace fi::test
