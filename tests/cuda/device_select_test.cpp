// Host logic of the CUDA backend, tested without a GPU: --device parsing and choice, the probe's
// report, and the padded layout of packed weights on the device.
#include <stdexcept>

#include <gtest/gtest.h>

#include "qathw/kernels/cuda.h"
#include "qathw/kernels/device.h"

namespace qathw::kernels {
namespace {

CudaProbe gpu() {
  CudaProbe p;
  p.compiled = true;
  p.available = true;
  p.count = 1;
  p.name = "NVIDIA H100 80GB HBM3";
  return p;
}

CudaProbe no_driver() {
  CudaProbe p;
  p.compiled = true;
  p.reason = "CUDA driver version is insufficient for CUDA runtime version";
  return p;
}

CudaProbe not_compiled() {
  CudaProbe p;
  p.reason = "CUDA support was not compiled in";
  return p;
}

TEST(DeviceRequest, ParsesTheThreeNames) {
  EXPECT_EQ(parse_device_request("auto"), DeviceRequest::Auto);
  EXPECT_EQ(parse_device_request("cpu"), DeviceRequest::Cpu);
  EXPECT_EQ(parse_device_request("cuda"), DeviceRequest::Cuda);
}

TEST(DeviceRequest, RejectsOtherNamesNamingThem) {
  for (const char* bad : {"", "gpu", "CUDA", "cuda:0", "cpu "}) {
    try {
      parse_device_request(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos) << e.what();
    }
  }
}

TEST(ChooseDevice, AutoTakesTheGpuAndNamesIt) {
  const DeviceChoice c = choose_device(DeviceRequest::Auto, gpu());
  EXPECT_EQ(c.device, Device::Cuda);
  EXPECT_FALSE(c.error);
  EXPECT_NE(c.message.find("NVIDIA H100 80GB HBM3"), std::string::npos) << c.message;
}

TEST(ChooseDevice, AutoFallsBackToTheCpuSayingWhy) {
  for (const CudaProbe& p : {no_driver(), not_compiled()}) {
    const DeviceChoice c = choose_device(DeviceRequest::Auto, p);
    EXPECT_EQ(c.device, Device::Cpu);
    EXPECT_FALSE(c.error);
    EXPECT_NE(c.message.find("falling back to the CPU"), std::string::npos) << c.message;
    EXPECT_EQ(c.message.find('\n'), std::string::npos) << "one line: " << c.message;
  }
  EXPECT_NE(choose_device(DeviceRequest::Auto, no_driver()).message.find("no CUDA device: CUDA driver version"),
            std::string::npos);
  EXPECT_NE(choose_device(DeviceRequest::Auto, not_compiled()).message.find("not compiled in"), std::string::npos);
}

TEST(ChooseDevice, CudaWithoutADeviceIsAnErrorWithTheReason) {
  const DeviceChoice a = choose_device(DeviceRequest::Cuda, no_driver());
  EXPECT_TRUE(a.error);
  EXPECT_NE(a.message.find("no CUDA device: CUDA driver version is insufficient"), std::string::npos) << a.message;
  const DeviceChoice b = choose_device(DeviceRequest::Cuda, not_compiled());
  EXPECT_TRUE(b.error);
  EXPECT_NE(b.message.find("CUDA support was not compiled in"), std::string::npos) << b.message;
  const DeviceChoice c = choose_device(DeviceRequest::Cuda, gpu());
  EXPECT_FALSE(c.error);
  EXPECT_EQ(c.device, Device::Cuda);
}

// A grouped convolution's weights go to the GPU one group at a time: group g's rows of codes,
// packed alone from code 0 and padded to whole device words.
TEST(GroupPackedCodes, AGroupsRowsPackedAlone) {
  for (const arith::WeightFormat w : {arith::WeightFormat::Ternary, arith::WeightFormat::Int4}) {
    const int patch = 9, group_out = 3, groups = 4;  // 27 codes per group: not byte-aligned for either format
    const std::size_t count = static_cast<std::size_t>(patch) * group_out * groups;
    std::vector<std::uint8_t> packed(arith::packed_bytes(count, w), 0);
    for (std::size_t i = 0; i < count; ++i) arith::store_code(packed.data(), i, static_cast<int>(i % 3) - 1, w);
    for (int g = 0; g < groups; ++g) {
      const std::vector<std::uint8_t> one = kernels::cuda::group_packed_codes(packed, w, patch, group_out, g);
      EXPECT_EQ(one.size() % kernels::cuda::kPackedWordBytes, 0u);
      EXPECT_EQ(one.size(), kernels::cuda::device_packed_bytes(static_cast<std::size_t>(patch) * group_out, w));
      for (std::size_t i = 0; i < static_cast<std::size_t>(patch) * group_out; ++i)
        ASSERT_EQ(arith::load_code(one.data(), i, w),
                  arith::load_code(packed.data(), static_cast<std::size_t>(g) * patch * group_out + i, w))
            << "group " << g << " code " << i;
      for (std::size_t b = arith::packed_bytes(static_cast<std::size_t>(patch) * group_out, w); b < one.size(); ++b)
        EXPECT_EQ(one[b], 0) << "padding byte " << b;
    }
  }
}

TEST(ChooseDevice, CpuIsAlwaysTheCpu) {
  for (const CudaProbe& p : {gpu(), no_driver(), not_compiled()}) {
    const DeviceChoice c = choose_device(DeviceRequest::Cpu, p);
    EXPECT_EQ(c.device, Device::Cpu);
    EXPECT_FALSE(c.error);
  }
}

// Whatever this machine has, the probe answers without throwing and explains a missing device.
TEST(ProbeCuda, ReportsAReasonWhenNoDeviceIsUsable) {
  const CudaProbe p = probe_cuda();
  EXPECT_EQ(p.compiled, QATHW_HAVE_CUDA == 1);
  if (p.available) {
    EXPECT_FALSE(p.name.empty());
  } else {
    EXPECT_FALSE(p.reason.empty());
  }
}

TEST(DevicePackedBytes, PadsThePackedArrayToWholeWords) {
  using arith::WeightFormat;
  EXPECT_EQ(cuda::device_packed_bytes(0, WeightFormat::Ternary), 0u);
  EXPECT_EQ(cuda::device_packed_bytes(1, WeightFormat::Ternary), 16u);
  EXPECT_EQ(cuda::device_packed_bytes(64, WeightFormat::Ternary), 16u);   // 16 bytes of 4 codes
  EXPECT_EQ(cuda::device_packed_bytes(65, WeightFormat::Ternary), 32u);
  EXPECT_EQ(cuda::device_packed_bytes(32, WeightFormat::Int4), 16u);      // 16 bytes of 2 codes
  EXPECT_EQ(cuda::device_packed_bytes(33, WeightFormat::Int4), 32u);
  EXPECT_EQ(cuda::device_packed_bytes(784 * 256, WeightFormat::Ternary), 784u * 256 / 4);
  for (std::size_t n = 1; n < 300; ++n)
    for (WeightFormat w : {WeightFormat::Ternary, WeightFormat::Int4}) {
      const std::size_t bytes = cuda::device_packed_bytes(n, w);
      EXPECT_EQ(bytes % 16, 0u);
      EXPECT_GE(bytes, arith::packed_bytes(n, w));
      EXPECT_LT(bytes, arith::packed_bytes(n, w) + 16);
    }
}

TEST(PackedLayerOrder, ExactSumWhereOrderCannotMatter) {
  arith::Format f;  // ternary, INT8, 24-bit saturating
  EXPECT_TRUE(arith::accumulation_order_free(784, f));
  EXPECT_TRUE(arith::accumulation_order_free(66052, f));    // 127 * 66052 <= 2^23 - 1
  EXPECT_FALSE(arith::accumulation_order_free(66053, f));
  f.weights = arith::WeightFormat::Int4;
  EXPECT_TRUE(arith::accumulation_order_free(9436, f));     // 889 * 9436 <= 2^23 - 1
  EXPECT_FALSE(arith::accumulation_order_free(9437, f));
  f.overflow = arith::Overflow::Wrap;                      // modular: any order
  EXPECT_TRUE(arith::accumulation_order_free(1 << 20, f));
}

}  // namespace
}  // namespace qathw::kernels
