// The GPU kernels' per-group weight decoding (cuda/block_decode.h), run on the host against
// host/quant's dequantize_row on random rows: the format arithmetic the device shares, checked
// where no GPU is needed.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "cuda/block_decode.h"
#include "host/kernels/quant.h"
#include "random_blocks.h"

namespace fi {
namespace {

class BlockDecode : public ::testing::TestWithParam<TensorType> {};

TEST_P(BlockDecode, EveryGroupEqualsDequantizeRow) {
  const TensorType type = GetParam();
  const bool float_type = is_float_type(type);
  // Float rows also get a partial last group (300 = 9 x 32 + 12).
  for (const int64_t cols : float_type ? std::vector<int64_t>{512, 300} : std::vector<int64_t>{512, 1024}) {
    std::mt19937 rng(static_cast<uint32_t>(cols) + static_cast<uint32_t>(type));
    std::normal_distribution<float> normal(0.0f, 1.5f);
    std::vector<float> values(static_cast<size_t>(cols));
    for (float& v : values) v = normal(rng);
    // 16-byte aligned like device memory, so the wide-load paths run too.
    std::vector<uint64_t> storage(row_bytes(type, static_cast<uint64_t>(cols)) / 8 + 2);
    auto* row = reinterpret_cast<uint8_t*>(storage.data());
    quantize_row(type, values.data(), row, cols);
    std::vector<float> expected(static_cast<size_t>(cols));
    dequantize_row(type, row, expected.data(), cols);

    for (int64_t group = 0; group * cuda::kGroup < cols; ++group) {
      const int valid = static_cast<int>(std::min<int64_t>(cuda::kGroup, cols - group * cuda::kGroup));
      float decoded[cuda::kGroup];
      cuda::decode_group(type, row, group, valid, decoded);
      for (int i = 0; i < cuda::kGroup; ++i) {
        const float want = i < valid ? expected[static_cast<size_t>(group * cuda::kGroup + i)] : 0.0f;
        ASSERT_EQ(decoded[i], want) << type_name(type) << " cols " << cols << " group " << group << " element " << i;
      }
    }
  }
}

TEST_P(BlockDecode, ArbitraryBlockBytesDecodeAsDequantizeRow) {
  const TensorType type = GetParam();
  if (is_float_type(type)) GTEST_SKIP() << "float rows have no block bytes";
  const int64_t cols = 1024;
  const std::vector<uint8_t> bytes = test::random_block_bytes(type, cols, 1, 17);
  std::vector<uint64_t> storage(bytes.size() / 8 + 2);  // 16-byte aligned, as device memory
  auto* row = reinterpret_cast<uint8_t*>(storage.data());
  std::memcpy(row, bytes.data(), bytes.size());
  std::vector<float> expected(static_cast<size_t>(cols));
  dequantize_row(type, row, expected.data(), cols);
  for (int64_t group = 0; group * cuda::kGroup < cols; ++group) {
    float decoded[cuda::kGroup];
    cuda::decode_group(type, row, group, cuda::kGroup, decoded);
    for (int i = 0; i < cuda::kGroup; ++i)
      ASSERT_EQ(decoded[i], expected[static_cast<size_t>(group * cuda::kGroup + i)])
          << type_name(type) << " group " << group << " element " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, BlockDecode, ::testing::ValuesIn(kTensorTypes),
                         [](const auto& info) { return std::string(type_name(info.param)); });

TEST(BlockDecodeFloat, UnalignedRowsTakeTheNarrowPath) {
  for (const TensorType type : {TensorType::F32, TensorType::F16, TensorType::BF16}) {
    std::vector<float> values(64);
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.25f - 3.0f;
    std::vector<uint8_t> storage(row_bytes(type, 64) + 16);
    uint8_t* row = storage.data() + 2;  // misaligned for 16-byte loads
    quantize_row(type, values.data(), row, 64);
    std::vector<float> expected(64);
    dequantize_row(type, row, expected.data(), 64);
    float decoded[cuda::kGroup];
    cuda::decode_group(type, row, 1, cuda::kGroup, decoded);
    for (int i = 0; i < cuda::kGroup; ++i) EXPECT_EQ(decoded[i], expected[32 + static_cast<size_t>(i)]) << type_name(type);
  }
}

}  // namespace
}  // namespace fi
