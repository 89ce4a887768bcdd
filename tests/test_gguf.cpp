// The GGUF reader on hand-built valid files and on every kind of corruption.
#include <cstring>

#include "io/error.h"
#include "io/gguf.h"
#include "test_support.h"

namespace fi {
namespace {

// Builds GGUF bytes by hand, independently of GgufWriter, so corruptions can be placed exactly.
struct Bytes {
  std::vector<uint8_t> data;
  template <typename T>
  Bytes& put(T value) {
    const auto* p = reinterpret_cast<const uint8_t*>(&value);
    data.insert(data.end(), p, p + sizeof value);
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    data.insert(data.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& pad(size_t alignment) {
    while (data.size() % alignment) data.push_back(0);
    return *this;
  }
};

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> shape;
  uint32_t type;
  uint64_t offset;
};

Bytes build(const std::vector<TensorSpec>& tensors, uint64_t data_bytes, uint32_t version = 3,
            uint32_t magic = 0x46554747) {
  Bytes b;
  b.put<uint32_t>(magic).put<uint32_t>(version).put<uint64_t>(tensors.size()).put<uint64_t>(2);
  b.str("general.architecture").put<uint32_t>(8).str("llama");
  b.str("test.array").put<uint32_t>(9).put<uint32_t>(5).put<uint64_t>(3).put<int32_t>(-1).put<int32_t>(2).put<int32_t>(3);
  for (const TensorSpec& t : tensors) {
    b.str(t.name).put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (uint64_t e : t.shape) b.put<uint64_t>(e);
    b.put<uint32_t>(t.type).put<uint64_t>(t.offset);
  }
  b.pad(32);
  b.data.resize(b.data.size() + data_bytes, 0x11);
  return b;
}

std::string write(const std::string& name, const Bytes& bytes) {
  const std::string path = test::scratch_path(name);
  test::write_bytes(path, bytes.data);
  return path;
}

void expect_error(const Bytes& bytes, const std::string& fragment) {
  const std::string path = write("corrupt.gguf", bytes);
  try {
    GgufFile::open(path);
    FAIL() << "accepted a corrupt file; expected an error containing '" << fragment << "'";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find(path), std::string::npos) << "error must name the file: " << error.what();
  }
}

TEST(Gguf, ReadsHandBuiltFile) {
  const Bytes bytes = build({{"a.weight", {32, 2}, 0, 0}, {"b.weight", {64}, 8, 256}}, 256 + 68);
  const GgufFile file = GgufFile::open(write("valid.gguf", bytes));
  EXPECT_EQ(file.version(), 3u);
  EXPECT_EQ(file.get_string("general.architecture"), "llama");
  EXPECT_EQ(file.get_int_array("test.array"), (std::vector<int64_t>{-1, 2, 3}));
  ASSERT_EQ(file.tensors().all().size(), 2u);
  const TensorInfo& a = file.tensors().require("a.weight", {32, 2}, {TensorType::F32});
  EXPECT_EQ(a.bytes, 256u);
  EXPECT_EQ(a.file_offset, file.data_offset());
  const TensorInfo& b = file.tensors().require("b.weight", {64}, {TensorType::Q8_0});
  EXPECT_EQ(b.bytes, 68u);
  EXPECT_EQ(b.file_offset, file.data_offset() + 256);
  EXPECT_EQ(file.data_offset() % 32, 0u);
}

TEST(Gguf, WriterRoundTripsEveryValueType) {
  const std::string path = test::scratch_path("roundtrip.gguf");
  {
    GgufWriter writer(path, 64);
    writer.add_string("s", "text");
    writer.add_uint32("u", 7);
    writer.add_int32("i", -7);
    writer.add_float32("f", 1.5f);
    writer.add_bool("b", true);
    writer.add_string_array("sa", {"x", "", "yz"});
    writer.add_float32_array("fa", {0.5f, -2.0f});
    writer.add_int32_array("ia", {4, -5});
    writer.add_tensor("t", TensorType::F16, {4, 3});
    writer.begin_data();
    const std::vector<uint16_t> halves(12, 0x3c00);
    writer.write_data(halves.data(), 24);
    writer.finish();
  }
  const GgufFile file = GgufFile::open(path);
  EXPECT_EQ(file.alignment(), 64u);
  EXPECT_EQ(file.get_string("s"), "text");
  EXPECT_EQ(file.get_uint("u"), 7u);
  EXPECT_EQ(file.find("i")->integer, -7);
  EXPECT_EQ(file.get_float("f"), 1.5);
  EXPECT_EQ(file.get_bool("b"), true);
  EXPECT_EQ(file.get_string_array("sa"), (std::vector<std::string>{"x", "", "yz"}));
  EXPECT_EQ(file.get_float_array("fa"), (std::vector<double>{0.5, -2.0}));
  EXPECT_EQ(file.get_int_array("ia"), (std::vector<int64_t>{4, -5}));
  EXPECT_EQ(file.tensors().find("t")->bytes, 24u);
  EXPECT_EQ(file.data_offset() % 64, 0u);
  EXPECT_THROW(file.get_string("u"), Error);
}

TEST(Gguf, RejectsBadMagicAndVersion) {
  expect_error(build({}, 0, 3, 0x12345678), "bad magic");
  expect_error(build({}, 0, 1), "unsupported GGUF version 1");
  expect_error(build({}, 0, 99), "unsupported GGUF version 99");
}

TEST(Gguf, EveryTruncationIsAnErrorNeverACrash) {
  const Bytes bytes = build({{"a.weight", {32, 2}, 0, 0}, {"b.weight", {64}, 8, 256}}, 256 + 68);
  for (size_t length = 0; length < bytes.data.size(); ++length) {
    Bytes cut;
    cut.data.assign(bytes.data.begin(), bytes.data.begin() + static_cast<std::ptrdiff_t>(length));
    const std::string path = write("truncated.gguf", cut);
    EXPECT_THROW(GgufFile::open(path), Error) << "length " << length;
  }
}

TEST(Gguf, RejectsCountsAndLengthsBeyondTheFile) {
  Bytes huge_tensors;
  huge_tensors.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(1ull << 40).put<uint64_t>(0);
  huge_tensors.data.resize(64);
  expect_error(huge_tensors, "tensor count");

  Bytes huge_metadata;
  huge_metadata.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(UINT64_MAX);
  huge_metadata.data.resize(64);
  expect_error(huge_metadata, "metadata count");

  Bytes long_string;
  long_string.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
  long_string.put<uint64_t>(1ull << 62);
  long_string.data.resize(64);
  expect_error(long_string, "exceeds the file");

  Bytes long_array;
  long_array.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
  long_array.str("k").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(1ull << 50);
  long_array.data.resize(80);
  expect_error(long_array, "exceeds the file");

  Bytes bad_value_type;
  bad_value_type.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
  bad_value_type.str("k").put<uint32_t>(77).put<uint64_t>(0);
  expect_error(bad_value_type, "unknown value type");
}

TEST(Gguf, RejectsBadTensorInfos) {
  expect_error(build({{"a", {32, 2}, 0, 0}}, 100), "extends past the end");
  expect_error(build({{"a", {32, 2}, 0, 0}, {"b", {32}, 0, 224}}, 1024), "overlap");
  expect_error(build({{"a", {32}, 16, 0}}, 1024), "unsupported tensor type IQ2_XXS");
  expect_error(build({{"a", {32}, 200, 0}}, 1024), "unsupported tensor type type#200");
  expect_error(build({{"a", {2, 2, 2, 2, 2}, 0, 0}}, 1024), "5 dimensions");
  expect_error(build({{"a", {1ull << 40, 1ull << 40}, 0, 0}}, 1024), "overflowing dimension");
  expect_error(build({{"a", {0}, 0, 0}}, 1024), "invalid or overflowing dimension 0");
  expect_error(build({{"a", {33}, 8, 0}}, 1024), "not a multiple of the Q8_0 block size");
  expect_error(build({{"a", {8}, 0, 16}}, 1024), "not a multiple of the alignment");
  expect_error(build({{"a", {8}, 0, 0}, {"a", {8}, 0, 32}}, 1024), "duplicate tensor name");
  expect_error(build({{"a", {8}, 0, UINT64_MAX - 31}}, 1024), "extends past the end");
}

TEST(Gguf, RejectsFilesThatAreNotGguf) {
  const std::string missing = test::scratch_path("does-not-exist.gguf");
  EXPECT_THROW(GgufFile::open(missing), Error);
  EXPECT_THROW(GgufFile::open(test::scratch_dir()), Error);
  Bytes tiny;
  tiny.put<uint32_t>(0x46554747);
  expect_error(tiny, "not a GGUF file");
}

TEST(TensorTable, RequireSaysExpectedVersusActual) {
  const Bytes bytes = build({{"a.weight", {32, 2}, 0, 0}}, 256);
  const GgufFile file = GgufFile::open(write("require.gguf", bytes));
  try {
    file.tensors().require("a.weight", {32, 3}, {TensorType::F32});
    FAIL();
  } catch (const Error& error) {
    EXPECT_STREQ(error.what(), "tensor 'a.weight': expected shape [32, 3], got [32, 2]");
  }
  try {
    file.tensors().require("a.weight", {32, 2}, {TensorType::F16, TensorType::Q8_0});
    FAIL();
  } catch (const Error& error) {
    EXPECT_STREQ(error.what(), "tensor 'a.weight': expected type F16/Q8_0, got F32");
  }
  EXPECT_THROW(file.tensors().require("missing", {1}, {TensorType::F32}), Error);
}

TEST(Gguf, ReadsEveryFixtureModel) {
  FI_REQUIRE_SHARED_DATA();
  for (const char* name : {"stories260K", "tiny-llama-f16", "tiny-llama-q8_0", "tiny-llama-q4_0", "tiny-llama-q4_k_m"}) {
    const GgufFile file = GgufFile::open(test::shared_data() + "/models/" + name + ".gguf");
    EXPECT_GT(file.tensors().all().size(), 10u) << name;
    EXPECT_EQ(file.get_string("general.architecture"), "llama") << name;
  }
}

}  // namespace
}  // namespace fi
