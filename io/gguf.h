#pragma once
// GGUF v2/v3 reader (validated before use) and a streaming writer.
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/tensor_table.h"

namespace fi {

enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_type_name(GgufType type);

struct GgufValue {
  GgufType type = GgufType::U32;
  // Scalars: integers in `integer` (signed ones sign-extended), floats in `real`, BOOL as 0/1.
  int64_t integer = 0;
  uint64_t unsigned_integer = 0;
  double real = 0.0;
  std::string string;
  // Arrays: element type and count; numeric elements kept as the file's little-endian bytes (so
  // memory stays proportional to the file), string elements decoded.
  GgufType element_type = GgufType::U8;
  uint64_t element_count = 0;
  std::vector<uint8_t> raw_elements;
  std::vector<std::string> strings;

  // Element i of a numeric array, widened.
  double real_at(uint64_t index) const;
  int64_t integer_at(uint64_t index) const;

  std::string summary(size_t max_elements = 4) const;  // for `inspect`
};

class GgufFile {
 public:
  // Parses and validates header, metadata and tensor infos; throws Error naming the file.
  static GgufFile open(const std::string& path);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t file_size() const { return file_size_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const TensorTable& tensors() const { return tensors_; }

  const GgufValue* find(const std::string& key) const;
  // Typed getters: nullopt when absent, Error when present with the wrong type.
  std::optional<std::string> get_string(const std::string& key) const;
  std::optional<uint64_t> get_uint(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  std::optional<bool> get_bool(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<double> get_float_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;

 private:
  std::string path_;
  uint32_t version_ = 0;
  uint64_t file_size_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  TensorTable tensors_;
};

// Writes a GGUF v3 file: metadata and tensor infos first, then each tensor's data in declared
// order, streamed by the caller in as many pieces as it likes.
class GgufWriter {
 public:
  explicit GgufWriter(const std::string& path, uint64_t alignment = 32);
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  void add_string(const std::string& key, const std::string& value);
  void add_uint32(const std::string& key, uint32_t value);
  void add_int32(const std::string& key, int32_t value);
  void add_float32(const std::string& key, float value);
  void add_bool(const std::string& key, bool value);
  void add_string_array(const std::string& key, const std::vector<std::string>& values);
  void add_float32_array(const std::string& key, const std::vector<float>& values);
  void add_int32_array(const std::string& key, const std::vector<int32_t>& values);
  // Re-encodes a value read from another file (any type, arrays included).
  void add_value(const std::string& key, const GgufValue& value);
  // Declares a tensor; shape in ggml order (row length first).
  void add_tensor(const std::string& name, TensorType type, const std::vector<uint64_t>& shape);

  // Writes header, metadata and tensor infos; then call write_data for each tensor in order.
  void begin_data();
  void write_data(const void* bytes, size_t size);
  void finish();

 private:
  struct PendingTensor {
    std::string name;
    TensorType type;
    std::vector<uint64_t> shape;
    uint64_t bytes;
    uint64_t relative_offset;
  };
  void put(const void* bytes, size_t size);
  void put_string(const std::string& value);
  template <typename T>
  void put_value(T value) { put(&value, sizeof value); }
  void pad_to_alignment();

  std::string path_;
  FILE* file_ = nullptr;
  uint64_t alignment_;
  uint64_t position_ = 0;
  std::vector<std::vector<char>> encoded_metadata_;
  std::vector<PendingTensor> tensors_;
  uint64_t data_bytes_ = 0;
  size_t current_tensor_ = 0;
  uint64_t written_in_tensor_ = 0;
  bool data_started_ = false;
};

}  // namespace fi
