// GPU kernel benchmark: achieved memory bandwidth of each fake-quantization kernel on large
// tensors against the device's peak, and the packed ternary / INT4 layer as a GEMV against its
// bandwidth bound. Prints one JSON object. bench/gpu/run drives it; docs/cuda.md explains it.
//
//   gpu_kernel_bench [--iterations N] [--peak-gbs X]
//   gpu_kernel_bench --write-idx DIR [--count N]   synthetic 28x28, 10-class IDX files (uncompressed)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <cuda_runtime.h>
#include <nlohmann/json.hpp>

#include "qathw/kernels/cuda.h"
#include "qathw/kernels/device.h"

namespace {

namespace cuda = qathw::kernels::cuda;
namespace arith = qathw::arith;
template <typename T>
using DeviceArray = cuda::DeviceArray<T>;

// Peak DRAM bandwidth from the device attributes (GB/s): 2 transfers per memory clock (DDR/HBM),
// clock in kHz, bus width in bits. 0 when the attributes are missing.
double peak_gbs(std::string& how) {
  int clock_khz = 0, bus_bits = 0;
  const cudaError_t a = cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, 0);
  const cudaError_t b = cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, 0);
  if (a != cudaSuccess || b != cudaSuccess || clock_khz <= 0 || bus_bits <= 0) {
    cudaGetLastError();
    how = "unavailable (cudaDevAttrMemoryClockRate / cudaDevAttrGlobalMemoryBusWidth not reported)";
    return 0;
  }
  how = "2 x " + std::to_string(clock_khz) + " kHz x " + std::to_string(bus_bits) + " bits (cudaDeviceGetAttribute)";
  return 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
}

// Seconds per call of `f`, the median of 5 timings of `iterations` calls each, after a warm-up.
double time_per_call(const std::function<void()>& f, int iterations) {
  f();
  cuda::synchronize();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<double> t;
  for (int r = 0; r < 5; ++r) {
    cudaEventRecord(start);
    for (int i = 0; i < iterations; ++i) f();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    t.push_back(ms / 1e3 / iterations);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cuda::synchronize();
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Device-to-device copy: a measured reference beside the nominal peak.
double copy_gbs(int iterations) {
  const std::size_t bytes = std::size_t{1} << 30;
  void* a = cuda::allocate(bytes);
  void* b = cuda::allocate(bytes);
  const double s = time_per_call([&] { cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice); }, iterations);
  cuda::release(a);
  cuda::release(b);
  return 2.0 * bytes / s / 1e9;  // read + write
}

std::vector<float> normal_floats(std::size_t n, std::uint64_t seed, float sigma) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

arith::Format format_for(arith::WeightFormat w) {
  arith::Format f;
  f.weights = w;
  if (w == arith::WeightFormat::Int4) {  // int4-fpga
    f.rounding = arith::Rounding::HalfEven;
    f.overflow = arith::Overflow::Wrap;
    f.acc_bits = 32;
    f.scale_mantissa_bits = 18;
  }
  return f;
}

nlohmann::json result(const std::string& kernel, const std::string& shape, double bytes, double seconds, double peak,
                      const std::string& bytes_note) {
  const double gbs = bytes / seconds / 1e9;
  nlohmann::json j = {{"kernel", kernel},   {"shape", shape},          {"bytes", bytes},   {"bytes_counted", bytes_note},
                      {"us", seconds * 1e6}, {"achieved_gbs", gbs}};
  if (peak > 0) j["fraction_of_peak"] = gbs / peak;
  return j;
}

void write_idx(const std::filesystem::path& dir, std::size_t count, std::size_t test_count) {
  std::filesystem::create_directories(dir);
  std::mt19937_64 rng(1);
  auto write = [&](const std::string& name, std::uint32_t magic, std::vector<std::uint32_t> dims, std::size_t bytes,
                   int modulo) {
    std::ofstream out(dir / name, std::ios::binary);
    auto be = [&](std::uint32_t v) {
      const unsigned char b[4] = {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16),
                                  static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
      out.write(reinterpret_cast<const char*>(b), 4);
    };
    be(magic);
    for (std::uint32_t d : dims) be(d);
    std::vector<char> data(bytes);
    for (auto& c : data) c = static_cast<char>(rng() % static_cast<unsigned>(modulo));
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) throw std::runtime_error((dir / name).string() + ": cannot write");
  };
  for (auto [prefix, n] : {std::pair<std::string, std::size_t>{"train", count}, {"t10k", test_count}}) {
    write(prefix + "-images-idx3-ubyte", 0x803, {static_cast<std::uint32_t>(n), 28, 28}, n * 784, 256);
    write(prefix + "-labels-idx1-ubyte", 0x801, {static_cast<std::uint32_t>(n)}, n, 10);
  }
}

int run(int iterations, double peak_override) {
  const qathw::kernels::CudaProbe probe = qathw::kernels::probe_cuda();
  if (!probe.available) {
    std::cerr << "gpu_kernel_bench: no CUDA device: " << probe.reason << "\n";
    return 2;
  }
  std::string how;
  double peak = peak_gbs(how);
  if (peak_override > 0) {
    peak = peak_override;
    how = "given with --peak-gbs";
  }
  const double copy = copy_gbs(iterations);
  nlohmann::json out = {{"device", probe.name},
                        {"peak_gbs", peak},
                        {"peak_source", how},
                        {"device_copy_gbs", copy},
                        {"iterations", iterations}};
  nlohmann::json& kernels = out["fake_quant"];
  kernels = nlohmann::json::array();
  for (const auto& [rows, cols] : {std::pair<int, int>{4096, 4096}, {16384, 4096}}) {
    const std::size_t n = static_cast<std::size_t>(rows) * cols;
    const std::string shape = std::to_string(rows) + "x" + std::to_string(cols);
    DeviceArray<float> w, codes(n), deq(n), mask(n), scales(rows), ref(1), grad, m, v;
    w.assign(normal_floats(n, 1, 0.05f));
    DeviceArray<arith::FixedPoint> requant(rows);
    DeviceArray<unsigned long long> sum(1);
    DeviceArray<int> bad;
    bad.assign(std::vector<int>{cuda::kNoBadChannel});
    for (auto format : {arith::WeightFormat::Ternary, arith::WeightFormat::Int4}) {
      const arith::Format f = format_for(format);
      const cuda::WeightQuantOutputs outs{codes.data(), scales.data(), deq.data(), mask.data(),
                                          requant.data(), ref.data(), sum.data(), bad.data()};
      const double s = time_per_call([&] { cuda::quantize_weights(w.data(), rows, cols, f, outs); }, iterations);
      kernels.push_back(result(format == arith::WeightFormat::Ternary ? "quantize_weights ternary (absmean)"
                                                                       : "quantize_weights int4 (per-channel)",
                               shape, 16.0 * n, s, peak,
                               "compulsory: read w, write codes, dequantized, mask (16 B/weight); the kernels "
                               "read w twice (statistic, then codes)"));
    }
    {
      // Per-token activation quantizer on integers (a hidden layer's requantized outputs).
      std::vector<std::int32_t> host(n);
      std::mt19937_64 rng(2);
      for (auto& x : host) x = static_cast<std::int32_t>(rng() % 2000001) - 1000000;
      DeviceArray<std::int32_t> z;
      z.assign(host);
      DeviceArray<std::int64_t> amax(rows);
      DeviceArray<float> scale(rows);
      const arith::Format f;
      const double s = time_per_call(
          [&] { cuda::quantize_tokens(z.data(), rows, cols, f, codes.data(), amax.data(), {scale.data(), nullptr, nullptr, 1.0f}); },
          iterations);
      kernels.push_back(result("quantize_tokens int32 -> codes (per-token absmax)", shape, 8.0 * n, s, peak,
                               "read values, write codes (8 B/element)"));
      DeviceArray<float> acc;
      acc.assign(normal_floats(n, 3, 1000.0f));
      std::vector<arith::FixedPoint> pairs(cols, arith::FixedPoint{40000, 20});
      DeviceArray<arith::FixedPoint> dpairs;
      dpairs.assign(pairs);
      const double e = time_per_call(
          [&] { cuda::accumulator_epilogue(acc.data(), rows, cols, dpairs.data(), true, f, z.data()); }, iterations);
      kernels.push_back(result("accumulator_epilogue (overflow, requantize, ReLU)", shape, 8.0 * n, e, peak,
                               "read accumulators, write integers (8 B/element)"));
    }
    {
      // Straight-through backward pieces and the optimizer.
      grad.assign(normal_floats(n, 4, 0.01f));
      m.assign(normal_floats(n, 5, 0.001f));
      v.resize(n);
      v.zero();
      qathw::kernels::AdamWParams p;
      const double s = time_per_call([&] { cuda::adamw_step(w.data(), grad.data(), m.data(), v.data(), n, p); }, iterations);
      kernels.push_back(result("adamw_step", shape, 28.0 * n, s, peak, "read w, g, m, v; write w, m, v (28 B/weight)"));
      const double k = time_per_call([&] { cuda::multiply(grad.data(), mask.data(), n); }, iterations);
      kernels.push_back(result("multiply (clipped STE mask)", shape, 12.0 * n, k, peak, "read g, mask; write g (12 B)"));
    }
  }

  nlohmann::json& gemv = out["packed_gemv"];
  gemv = nlohmann::json::array();
  for (const auto& [rows, cols] : {std::pair<int, int>{4096, 4096}, {16384, 4096}, {16384, 16384}}) {
    for (auto format : {arith::WeightFormat::Ternary, arith::WeightFormat::Int4}) {
      const arith::Format f = format_for(format);
      const std::size_t count = static_cast<std::size_t>(rows) * cols;
      std::vector<std::uint8_t> packed(cuda::device_packed_bytes(count, format));
      std::mt19937_64 rng(6);
      for (auto& b : packed) b = static_cast<std::uint8_t>(rng());
      if (format == arith::WeightFormat::Ternary)  // no 0b10 fields
        for (auto& b : packed) b = static_cast<std::uint8_t>(b & 0x55);
      DeviceArray<std::uint8_t> dpacked;
      dpacked.assign(packed);
      std::vector<std::int8_t> x(cols);
      for (auto& c : x) c = static_cast<std::int8_t>(static_cast<int>(rng() % 255) - 127);
      DeviceArray<std::int8_t> dx;
      dx.assign(x);
      DeviceArray<arith::FixedPoint> pairs;
      pairs.assign(std::vector<arith::FixedPoint>(rows, arith::FixedPoint{40000, 24}));
      DeviceArray<std::int32_t> z(rows);
      const int lanes = 16;
      const double s = time_per_call(
          [&] { cuda::packed_layer(dpacked.data(), dx.data(), 1, cols, rows, lanes, f, pairs.data(), true, z.data()); },
          iterations);
      const double bytes = static_cast<double>(qathw::arith::packed_bytes(count, format)) + cols + 16.0 * rows + 4.0 * rows;
      nlohmann::json j = result(format == arith::WeightFormat::Ternary ? "packed_layer ternary (2-bit) GEMV"
                                                                      : "packed_layer int4 GEMV",
                                std::to_string(rows) + "x" + std::to_string(cols), bytes, s, peak,
                                "packed weights + codes + requant pairs + outputs");
      if (peak > 0) j["bound_us"] = bytes / (peak * 1e9) * 1e6;
      j["order_free"] = arith::accumulation_order_free(cols, f);
      j["note"] = bytes < 64.0 * (1 << 20) ? "weights fit in L2: repeated calls read them from cache" : "weights exceed L2";
      gemv.push_back(j);
    }
  }
  std::cout << out.dump(2) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 50;
  double peak = 0;
  std::string idx_dir;
  std::size_t count = 60000;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        return argv[++i];
      };
      if (a == "--iterations")
        iterations = std::stoi(value());
      else if (a == "--peak-gbs")
        peak = std::stod(value());
      else if (a == "--write-idx")
        idx_dir = value();
      else if (a == "--count")
        count = std::stoul(value());
      else
        throw std::invalid_argument("unknown argument '" + a + "'");
    }
    if (iterations < 1) throw std::invalid_argument("--iterations must be at least 1");
    if (!idx_dir.empty()) {
      write_idx(idx_dir, count, 10000);
      return 0;
    }
    return run(iterations, peak);
  } catch (const std::exception& e) {
    std::cerr << "gpu_kernel_bench: " << e.what() << "\n";
    return 2;
  }
}
