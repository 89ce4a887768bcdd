#include "io/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "io/error.h"
#include "io/file.h"

namespace fi {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kMaxStringBytes = 1ull << 30;

size_t scalar_size(GgufType type) {
  switch (type) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

bool is_integer(GgufType type) {
  switch (type) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16:
    case GgufType::U32: case GgufType::I32: case GgufType::U64: case GgufType::I64: return true;
    default: return false;
  }
}

bool is_signed(GgufType type) {
  return type == GgufType::I8 || type == GgufType::I16 || type == GgufType::I32 || type == GgufType::I64;
}

// Decodes one little-endian scalar of `type` from `bytes` into the value's fields.
void decode_scalar(GgufType type, const uint8_t* bytes, int64_t* integer, uint64_t* unsigned_integer,
                   double* real) {
  uint64_t raw = 0;
  std::memcpy(&raw, bytes, scalar_size(type));
  switch (type) {
    case GgufType::U8: case GgufType::U16: case GgufType::U32: case GgufType::U64: case GgufType::BOOL:
      *unsigned_integer = raw;
      *integer = static_cast<int64_t>(raw);
      *real = static_cast<double>(raw);
      return;
    case GgufType::I8: *integer = static_cast<int8_t>(raw); break;
    case GgufType::I16: *integer = static_cast<int16_t>(raw); break;
    case GgufType::I32: *integer = static_cast<int32_t>(raw); break;
    case GgufType::I64: *integer = static_cast<int64_t>(raw); break;
    case GgufType::F32: {
      float value;
      std::memcpy(&value, bytes, 4);
      *real = value;
      *integer = 0;
      *unsigned_integer = 0;
      return;
    }
    case GgufType::F64: {
      std::memcpy(real, bytes, 8);
      *integer = 0;
      *unsigned_integer = 0;
      return;
    }
    default: return;
  }
  *unsigned_integer = static_cast<uint64_t>(*integer);
  *real = static_cast<double>(*integer);
}

// Sequential reader over the file that never reads past its end; buffered so that metadata with
// hundreds of thousands of strings costs few syscalls.
class Cursor {
 public:
  explicit Cursor(const ReadFile& file) : file_(file) {}

  uint64_t offset() const { return offset_; }
  uint64_t remaining() const { return file_.size() - offset_; }

  void read(void* destination, uint64_t bytes, const char* what) {
    if (bytes > remaining())
      fail("%s: truncated: %s needs %llu bytes at offset %llu but the file has %llu", file_.path().c_str(),
           what, static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(offset_),
           static_cast<unsigned long long>(file_.size()));
    auto* out = static_cast<uint8_t*>(destination);
    while (bytes > 0) {
      if (buffer_position_ == buffer_.size()) refill();
      const uint64_t take = std::min<uint64_t>(bytes, buffer_.size() - buffer_position_);
      std::memcpy(out, buffer_.data() + buffer_position_, take);
      buffer_position_ += take;
      offset_ += take;
      out += take;
      bytes -= take;
    }
  }

  template <typename T>
  T value(const char* what) {
    T result;
    read(&result, sizeof result, what);
    return result;
  }

  std::string string(const char* what) {
    const uint64_t length = value<uint64_t>(what);
    if (length > remaining() || length > kMaxStringBytes)
      fail("%s: %s: string length %llu at offset %llu exceeds the file", file_.path().c_str(), what,
           static_cast<unsigned long long>(length), static_cast<unsigned long long>(offset_ - 8));
    std::string text(length, '\0');
    read(text.data(), length, what);
    return text;
  }

 private:
  void refill() {
    const uint64_t take = std::min<uint64_t>(kBufferBytes, remaining());
    buffer_.resize(take);
    file_.read_exact(buffer_.data(), take, offset_);
    buffer_position_ = 0;
  }
  static constexpr uint64_t kBufferBytes = 1 << 20;
  const ReadFile& file_;
  uint64_t offset_ = 0;
  std::vector<uint8_t> buffer_;
  size_t buffer_position_ = 0;
};

GgufValue read_value(Cursor& cursor, GgufType type, const std::string& path, const std::string& key) {
  GgufValue value;
  value.type = type;
  if (type == GgufType::STRING) {
    value.string = cursor.string(key.c_str());
    return value;
  }
  if (type == GgufType::ARRAY) {
    const uint32_t element_type = cursor.value<uint32_t>(key.c_str());
    const uint64_t count = cursor.value<uint64_t>(key.c_str());
    value.element_type = static_cast<GgufType>(element_type);
    value.element_count = count;
    if (value.element_type == GgufType::STRING) {
      if (count > cursor.remaining() / 8)
        fail("%s: metadata '%s': array of %llu strings exceeds the file", path.c_str(), key.c_str(),
             static_cast<unsigned long long>(count));
      value.strings.reserve(count);
      for (uint64_t i = 0; i < count; ++i) value.strings.push_back(cursor.string(key.c_str()));
      return value;
    }
    const size_t element_size = scalar_size(value.element_type);
    if (element_size == 0)
      fail("%s: metadata '%s': unsupported array element type %u", path.c_str(), key.c_str(), element_type);
    if (count > cursor.remaining() / element_size)
      fail("%s: metadata '%s': array of %llu elements exceeds the file", path.c_str(), key.c_str(),
           static_cast<unsigned long long>(count));
    value.raw_elements.resize(count * element_size);
    cursor.read(value.raw_elements.data(), value.raw_elements.size(), key.c_str());
    return value;
  }
  const size_t size = scalar_size(type);
  if (size == 0)
    fail("%s: metadata '%s': unknown value type %u", path.c_str(), key.c_str(), static_cast<unsigned>(type));
  uint8_t bytes[8] = {};
  cursor.read(bytes, size, key.c_str());
  decode_scalar(type, bytes, &value.integer, &value.unsigned_integer, &value.real);
  if (type == GgufType::BOOL && bytes[0] > 1)
    fail("%s: metadata '%s': invalid bool value %u", path.c_str(), key.c_str(), bytes[0]);
  return value;
}

}  // namespace

const char* gguf_type_name(GgufType type) {
  static const char* const names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                      "bool", "string", "array", "u64", "i64", "f64"};
  const auto index = static_cast<uint32_t>(type);
  return index < std::size(names) ? names[index] : "unknown";
}

double GgufValue::real_at(uint64_t index) const {
  int64_t integer_value = 0;
  uint64_t unsigned_value = 0;
  double real_value = 0;
  decode_scalar(element_type, raw_elements.data() + index * scalar_size(element_type), &integer_value,
                &unsigned_value, &real_value);
  return real_value;
}

int64_t GgufValue::integer_at(uint64_t index) const {
  int64_t integer_value = 0;
  uint64_t unsigned_value = 0;
  double real_value = 0;
  decode_scalar(element_type, raw_elements.data() + index * scalar_size(element_type), &integer_value,
                &unsigned_value, &real_value);
  return integer_value;
}

std::string GgufValue::summary(size_t max_elements) const {
  switch (type) {
    case GgufType::STRING: return "\"" + (string.size() > 80 ? string.substr(0, 77) + "..." : string) + "\"";
    case GgufType::BOOL: return integer ? "true" : "false";
    case GgufType::F32: case GgufType::F64: return strprintf("%g", real);
    case GgufType::ARRAY: {
      std::string text = strprintf("%s[%llu] [", gguf_type_name(element_type),
                                   static_cast<unsigned long long>(element_count));
      const uint64_t shown = std::min<uint64_t>(element_count, max_elements);
      for (uint64_t i = 0; i < shown; ++i) {
        if (i) text += ", ";
        if (element_type == GgufType::STRING) text += "\"" + strings[i] + "\"";
        else if (element_type == GgufType::F32 || element_type == GgufType::F64) text += strprintf("%g", real_at(i));
        else text += std::to_string(integer_at(i));
      }
      return text + (shown < element_count ? ", ...]" : "]");
    }
    default:
      return is_signed(type) ? std::to_string(integer) : std::to_string(unsigned_integer);
  }
}

GgufFile GgufFile::open(const std::string& path) {
  ReadFile file(path);
  Cursor cursor(file);
  GgufFile gguf;
  gguf.path_ = path;
  gguf.file_size_ = file.size();

  if (file.size() < 24) fail("%s: not a GGUF file (only %llu bytes)", path.c_str(),
                             static_cast<unsigned long long>(file.size()));
  if (cursor.value<uint32_t>("magic") != kMagic) fail("%s: not a GGUF file (bad magic)", path.c_str());
  gguf.version_ = cursor.value<uint32_t>("version");
  if (gguf.version_ != 2 && gguf.version_ != 3)
    fail("%s: unsupported GGUF version %u (expected 2 or 3)", path.c_str(), gguf.version_);
  const uint64_t tensor_count = cursor.value<uint64_t>("tensor count");
  const uint64_t metadata_count = cursor.value<uint64_t>("metadata count");
  // Each metadata entry needs at least a key length, a type and one byte; each tensor info at least
  // a name length, n_dims, one dim, a type and an offset.
  if (metadata_count > cursor.remaining() / 13)
    fail("%s: metadata count %llu exceeds the file", path.c_str(), static_cast<unsigned long long>(metadata_count));
  if (tensor_count > cursor.remaining() / 32)
    fail("%s: tensor count %llu exceeds the file", path.c_str(), static_cast<unsigned long long>(tensor_count));

  for (uint64_t i = 0; i < metadata_count; ++i) {
    std::string key = cursor.string("metadata key");
    const auto type = static_cast<GgufType>(cursor.value<uint32_t>("metadata type"));
    GgufValue value = read_value(cursor, type, path, key);
    if (gguf.find(key)) fail("%s: duplicate metadata key '%s'", path.c_str(), key.c_str());
    gguf.metadata_.emplace_back(std::move(key), std::move(value));
  }

  if (const GgufValue* alignment = gguf.find("general.alignment")) {
    if (!is_integer(alignment->type) || alignment->unsigned_integer == 0 ||
        (alignment->unsigned_integer & (alignment->unsigned_integer - 1)) != 0 ||
        alignment->unsigned_integer > (1u << 20))
      fail("%s: general.alignment must be a power of two up to 1 MiB", path.c_str());
    gguf.alignment_ = alignment->unsigned_integer;
  }

  std::vector<TensorInfo> infos;
  infos.reserve(tensor_count);
  std::vector<uint64_t> relative_offsets;
  for (uint64_t i = 0; i < tensor_count; ++i) {
    TensorInfo info;
    info.name = cursor.string("tensor name");
    if (info.name.empty() || info.name.size() > 256)
      fail("%s: tensor %llu: name length %zu is not in 1..256", path.c_str(),
           static_cast<unsigned long long>(i), info.name.size());
    const uint32_t n_dims = cursor.value<uint32_t>("tensor dims");
    if (n_dims == 0 || n_dims > kMaxDims)
      fail("%s: tensor '%s': %u dimensions (1..%d supported)", path.c_str(), info.name.c_str(), n_dims, kMaxDims);
    info.n_dims = static_cast<int>(n_dims);
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t extent = cursor.value<uint64_t>("tensor shape");
      if (extent == 0 || extent > (1ull << 40) || elements > std::numeric_limits<uint64_t>::max() / extent ||
          elements * extent > (1ull << 48))
        fail("%s: tensor '%s': invalid or overflowing dimension %llu", path.c_str(), info.name.c_str(),
             static_cast<unsigned long long>(extent));
      elements *= extent;
      info.shape[d] = extent;
    }
    const uint32_t raw_type = cursor.value<uint32_t>("tensor type");
    const auto traits = find_type_traits(raw_type);
    if (!traits)
      fail("%s: tensor '%s': unsupported tensor type %s", path.c_str(), info.name.c_str(),
           type_name(raw_type).c_str());
    info.type = traits->type;
    if (info.shape[0] % traits->block_elements != 0)
      fail("%s: tensor '%s': row length %llu is not a multiple of the %s block size %u", path.c_str(),
           info.name.c_str(), static_cast<unsigned long long>(info.shape[0]), traits->name, traits->block_elements);
    info.bytes = elements / traits->block_elements * traits->block_bytes;
    relative_offsets.push_back(cursor.value<uint64_t>("tensor offset"));
    if (relative_offsets.back() % gguf.alignment_ != 0)
      fail("%s: tensor '%s': offset %llu is not a multiple of the alignment %llu", path.c_str(),
           info.name.c_str(), static_cast<unsigned long long>(relative_offsets.back()),
           static_cast<unsigned long long>(gguf.alignment_));
    infos.push_back(std::move(info));
  }

  gguf.data_offset_ = (cursor.offset() + gguf.alignment_ - 1) / gguf.alignment_ * gguf.alignment_;
  for (size_t i = 0; i < infos.size(); ++i) {
    TensorInfo& info = infos[i];
    const uint64_t relative = relative_offsets[i];
    if (relative > file.size() || gguf.data_offset_ + relative > file.size() ||
        info.bytes > file.size() - gguf.data_offset_ - relative)
      fail("%s: tensor '%s': data [%llu, +%llu) extends past the end of the file (%llu bytes)", path.c_str(),
           info.name.c_str(), static_cast<unsigned long long>(gguf.data_offset_ + relative),
           static_cast<unsigned long long>(info.bytes), static_cast<unsigned long long>(file.size()));
    info.file_offset = gguf.data_offset_ + relative;
  }

  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& info : infos) by_offset.push_back(&info);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->file_offset < b->file_offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i - 1]->file_offset + by_offset[i - 1]->bytes > by_offset[i]->file_offset)
      fail("%s: tensors '%s' and '%s' overlap", path.c_str(), by_offset[i - 1]->name.c_str(),
           by_offset[i]->name.c_str());
  }
  try {
    gguf.tensors_ = TensorTable(std::move(infos));
  } catch (const Error& error) {
    fail("%s: %s", path.c_str(), error.what());
  }
  return gguf;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  for (const auto& [name, value] : metadata_)
    if (name == key) return &value;
  return nullptr;
}

std::optional<std::string> GgufFile::get_string(const std::string& key) const {
  const GgufValue* value = find(key);
  if (!value) return std::nullopt;
  if (value->type != GgufType::STRING) fail("%s: metadata '%s' is not a string", path_.c_str(), key.c_str());
  return value->string;
}

std::optional<uint64_t> GgufFile::get_uint(const std::string& key) const {
  const GgufValue* value = find(key);
  if (!value) return std::nullopt;
  if (!is_integer(value->type) || (is_signed(value->type) && value->integer < 0))
    fail("%s: metadata '%s' is not a non-negative integer", path_.c_str(), key.c_str());
  return value->unsigned_integer;
}

std::optional<double> GgufFile::get_float(const std::string& key) const {
  const GgufValue* value = find(key);
  if (!value) return std::nullopt;
  if (value->type != GgufType::F32 && value->type != GgufType::F64 && !is_integer(value->type))
    fail("%s: metadata '%s' is not a number", path_.c_str(), key.c_str());
  return value->real;
}

std::optional<bool> GgufFile::get_bool(const std::string& key) const {
  const GgufValue* value = find(key);
  if (!value) return std::nullopt;
  if (value->type != GgufType::BOOL) fail("%s: metadata '%s' is not a bool", path_.c_str(), key.c_str());
  return value->integer != 0;
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue* value = find(key);
  if (!value) return {};
  if (value->type != GgufType::ARRAY || value->element_type != GgufType::STRING)
    fail("%s: metadata '%s' is not an array of strings", path_.c_str(), key.c_str());
  return value->strings;
}

std::vector<double> GgufFile::get_float_array(const std::string& key) const {
  const GgufValue* value = find(key);
  if (!value) return {};
  if (value->type != GgufType::ARRAY || value->element_type == GgufType::STRING)
    fail("%s: metadata '%s' is not a numeric array", path_.c_str(), key.c_str());
  std::vector<double> result(value->element_count);
  for (uint64_t i = 0; i < value->element_count; ++i) result[i] = value->real_at(i);
  return result;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  const GgufValue* value = find(key);
  if (!value) return {};
  if (value->type != GgufType::ARRAY || !is_integer(value->element_type))
    fail("%s: metadata '%s' is not an integer array", path_.c_str(), key.c_str());
  std::vector<int64_t> result(value->element_count);
  for (uint64_t i = 0; i < value->element_count; ++i) result[i] = value->integer_at(i);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Writer

GgufWriter::GgufWriter(const std::string& path, uint64_t alignment) : path_(path), alignment_(alignment) {
  file_ = std::fopen(path.c_str(), "wb");
  if (!file_) fail("%s: cannot create: %s", path.c_str(), std::strerror(errno));
}

GgufWriter::~GgufWriter() {
  if (file_) std::fclose(file_);
}

namespace {
struct Encoder {
  std::vector<char> bytes;
  void put(const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    bytes.insert(bytes.end(), p, p + size);
  }
  template <typename T>
  void value(T v) { put(&v, sizeof v); }
  void string(const std::string& s) {
    value<uint64_t>(s.size());
    put(s.data(), s.size());
  }
  void key(const std::string& k, GgufType type) {
    string(k);
    value<uint32_t>(static_cast<uint32_t>(type));
  }
};
}  // namespace

namespace {
template <typename T>
GgufValue numeric_array(GgufType element_type, const std::vector<T>& values) {
  GgufValue value;
  value.type = GgufType::ARRAY;
  value.element_type = element_type;
  value.element_count = values.size();
  value.raw_elements.resize(values.size() * sizeof(T));
  std::memcpy(value.raw_elements.data(), values.data(), value.raw_elements.size());
  return value;
}
GgufValue scalar(GgufType type, uint64_t bits, double real = 0.0) {
  GgufValue value;
  value.type = type;
  value.unsigned_integer = bits;
  value.real = real;
  return value;
}
}  // namespace

void GgufWriter::add_string(const std::string& key, const std::string& value) {
  GgufValue encoded;
  encoded.type = GgufType::STRING;
  encoded.string = value;
  add_value(key, encoded);
}
void GgufWriter::add_uint32(const std::string& key, uint32_t value) { add_value(key, scalar(GgufType::U32, value)); }
void GgufWriter::add_int32(const std::string& key, int32_t value) {
  add_value(key, scalar(GgufType::I32, static_cast<uint32_t>(value)));
}
void GgufWriter::add_float32(const std::string& key, float value) { add_value(key, scalar(GgufType::F32, 0, value)); }
void GgufWriter::add_bool(const std::string& key, bool value) { add_value(key, scalar(GgufType::BOOL, value ? 1 : 0)); }
void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& values) {
  GgufValue encoded;
  encoded.type = GgufType::ARRAY;
  encoded.element_type = GgufType::STRING;
  encoded.element_count = values.size();
  encoded.strings = values;
  add_value(key, encoded);
}
void GgufWriter::add_float32_array(const std::string& key, const std::vector<float>& values) {
  add_value(key, numeric_array(GgufType::F32, values));
}
void GgufWriter::add_int32_array(const std::string& key, const std::vector<int32_t>& values) {
  add_value(key, numeric_array(GgufType::I32, values));
}

void GgufWriter::add_value(const std::string& key, const GgufValue& value) {
  Encoder e;
  e.key(key, value.type);
  if (value.type == GgufType::STRING) {
    e.string(value.string);
  } else if (value.type == GgufType::ARRAY) {
    e.value<uint32_t>(static_cast<uint32_t>(value.element_type));
    e.value<uint64_t>(value.element_count);
    if (value.element_type == GgufType::STRING)
      for (const std::string& s : value.strings) e.string(s);
    else
      e.put(value.raw_elements.data(), value.raw_elements.size());
  } else {
    switch (scalar_size(value.type)) {
      case 1: e.value<uint8_t>(static_cast<uint8_t>(value.unsigned_integer)); break;
      case 2: e.value<uint16_t>(static_cast<uint16_t>(value.unsigned_integer)); break;
      case 4:
        if (value.type == GgufType::F32) e.value<float>(static_cast<float>(value.real));
        else e.value<uint32_t>(static_cast<uint32_t>(value.unsigned_integer));
        break;
      default:
        if (value.type == GgufType::F64) e.value<double>(value.real);
        else e.value<uint64_t>(value.unsigned_integer);
    }
  }
  encoded_metadata_.push_back(std::move(e.bytes));
}

void GgufWriter::add_tensor(const std::string& name, TensorType type, const std::vector<uint64_t>& shape) {
  if (data_started_) fail("internal: add_tensor after begin_data");
  uint64_t elements = 1;
  for (uint64_t extent : shape) elements *= extent;
  const TypeTraits& traits = type_traits(type);
  if (shape.empty() || shape[0] % traits.block_elements != 0)
    fail("internal: tensor '%s' row length is not a multiple of the %s block", name.c_str(), traits.name);
  const uint64_t bytes = elements / traits.block_elements * traits.block_bytes;
  tensors_.push_back({name, type, shape, bytes, data_bytes_});
  data_bytes_ += (bytes + alignment_ - 1) / alignment_ * alignment_;
}

void GgufWriter::put(const void* bytes, size_t size) {
  if (size && std::fwrite(bytes, 1, size, file_) != size)
    fail("%s: write failed: %s", path_.c_str(), std::strerror(errno));
  position_ += size;
}

void GgufWriter::put_string(const std::string& value) {
  put_value<uint64_t>(value.size());
  put(value.data(), value.size());
}

void GgufWriter::pad_to_alignment() {
  static const char zeros[64] = {};
  uint64_t padding = (alignment_ - position_ % alignment_) % alignment_;
  while (padding > 0) {
    const uint64_t take = std::min<uint64_t>(padding, sizeof zeros);
    put(zeros, take);
    padding -= take;
  }
}

void GgufWriter::begin_data() {
  put_value<uint32_t>(kMagic);
  put_value<uint32_t>(3);
  put_value<uint64_t>(tensors_.size());
  put_value<uint64_t>(encoded_metadata_.size() + (alignment_ != 32 ? 1 : 0));
  for (const auto& entry : encoded_metadata_) put(entry.data(), entry.size());
  if (alignment_ != 32) {
    put_string("general.alignment");
    put_value<uint32_t>(static_cast<uint32_t>(GgufType::U32));
    put_value<uint32_t>(static_cast<uint32_t>(alignment_));
  }
  for (const PendingTensor& tensor : tensors_) {
    put_string(tensor.name);
    put_value<uint32_t>(static_cast<uint32_t>(tensor.shape.size()));
    for (uint64_t extent : tensor.shape) put_value<uint64_t>(extent);
    put_value<uint32_t>(static_cast<uint32_t>(tensor.type));
    put_value<uint64_t>(tensor.relative_offset);
  }
  pad_to_alignment();
  data_started_ = true;
}

void GgufWriter::write_data(const void* bytes, size_t size) {
  const char* p = static_cast<const char*>(bytes);
  while (size > 0) {
    if (current_tensor_ >= tensors_.size()) fail("internal: more tensor data than declared");
    const PendingTensor& tensor = tensors_[current_tensor_];
    const uint64_t take = std::min<uint64_t>(size, tensor.bytes - written_in_tensor_);
    put(p, take);
    p += take;
    size -= take;
    written_in_tensor_ += take;
    if (written_in_tensor_ == tensor.bytes) {
      pad_to_alignment();
      ++current_tensor_;
      written_in_tensor_ = 0;
    }
  }
}

void GgufWriter::finish() {
  if (!data_started_) begin_data();
  if (current_tensor_ != tensors_.size())
    fail("internal: %s: tensor '%s' data incomplete", path_.c_str(), tensors_[current_tensor_].name.c_str());
  if (std::fflush(file_) != 0 || std::fclose(file_) != 0) {
    file_ = nullptr;
    fail("%s: write failed: %s", path_.c_str(), std::strerror(errno));
  }
  file_ = nullptr;
}

}  // namespace fi
