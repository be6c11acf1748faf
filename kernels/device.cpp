#include "qathw/kernels/device.h"

#include <stdexcept>

namespace qathw::kernels {

DeviceRequest parse_device_request(const std::string& text) {
  if (text == "auto") return DeviceRequest::Auto;
  if (text == "cpu") return DeviceRequest::Cpu;
  if (text == "cuda") return DeviceRequest::Cuda;
  throw std::invalid_argument("--device: '" + text + "' is not one of auto, cpu, cuda");
}

namespace {

std::string why_not(const CudaProbe& probe) {
  if (!probe.compiled) return "CUDA support was not compiled in (no nvcc when qat-hw was built)";
  return "no CUDA device: " + (probe.reason.empty() ? std::string("none reported") : probe.reason);
}

}  // namespace

DeviceChoice choose_device(DeviceRequest request, const CudaProbe& probe) {
  DeviceChoice c;
  const bool gpu = probe.compiled && probe.available;
  switch (request) {
    case DeviceRequest::Cpu:
      c.message = "device: cpu";
      break;
    case DeviceRequest::Cuda:
      if (gpu) {
        c.device = Device::Cuda;
        c.message = "device: cuda:0 (" + probe.name + ")";
      } else {
        c.error = true;
        c.message = "--device cuda: " + why_not(probe);
      }
      break;
    case DeviceRequest::Auto:
      if (gpu) {
        c.device = Device::Cuda;
        c.message = "device: cuda:0 (" + probe.name + "), chosen by --device auto";
      } else {
        c.message = "device: cpu (--device auto: " + why_not(probe) + "; falling back to the CPU)";
      }
      break;
  }
  return c;
}

}  // namespace qathw::kernels
