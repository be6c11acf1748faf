// The CUDA runtime behind kernels/device.h and the memory functions of cuda.h.
#include <cuda_runtime.h>

#include "common.cuh"
#include "qathw/kernels/device.h"

namespace qathw::kernels {

CudaProbe probe_cuda() {
  CudaProbe p;
  p.compiled = true;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    // No driver, an old driver, no device: any error means no usable device.
    p.reason = cudaGetErrorString(err);
    cudaGetLastError();  // clear it
    return p;
  }
  p.count = count;
  if (count == 0) {
    p.reason = "the CUDA runtime reports no device";
    return p;
  }
  cudaDeviceProp prop{};
  const cudaError_t prop_err = cudaGetDeviceProperties(&prop, 0);
  if (prop_err != cudaSuccess) {
    p.reason = std::string("device 0: ") + cudaGetErrorString(prop_err);
    cudaGetLastError();
    return p;
  }
  p.available = true;
  p.name = prop.name;
  return p;
}

namespace cuda {

using detail::check;

void* allocate(std::size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, bytes), "cudaMalloc");
  return p;
}

void release(void* p) noexcept {
  if (p) cudaFree(p);
}

void upload(void* device, const void* host, std::size_t bytes) {
  check(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice), "copy to the device");
}

void download(void* host, const void* device, std::size_t bytes) {
  check(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost), "copy from the device");
}

void fill_zero(void* device, std::size_t bytes) { check(cudaMemsetAsync(device, 0, bytes), "cudaMemsetAsync"); }

void synchronize() { check(cudaDeviceSynchronize(), "kernel execution"); }

}  // namespace cuda
}  // namespace qathw::kernels
