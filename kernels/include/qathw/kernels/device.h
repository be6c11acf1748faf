// Which device the trainer runs on: the user's request (--device auto|cpu|cuda), what the CUDA
// runtime reports, and the choice made from the two. Host code only; it builds without CUDA.
#pragma once

#include <string>

namespace qathw::kernels {

enum class DeviceRequest { Auto, Cpu, Cuda };
enum class Device { Cpu, Cuda };

// "auto", "cpu" or "cuda"; anything else throws std::invalid_argument naming the value.
DeviceRequest parse_device_request(const std::string& text);

// What the CUDA runtime says about device 0.
struct CudaProbe {
  bool compiled = false;   // this build has CUDA support
  bool available = false;  // a usable device is present
  int count = 0;           // devices the runtime reports
  std::string name;        // device 0's name, when available
  std::string reason;      // why no device is usable, when not available
};

// Asks the CUDA runtime (cudaGetDeviceCount; any error counts as "no device", with its text as
// the reason). Without CUDA support compiled in: compiled = false and a reason saying so.
CudaProbe probe_cuda();

struct DeviceChoice {
  Device device = Device::Cpu;
  bool error = false;   // the request cannot be met (the command exits 2)
  std::string message;  // one line for the user: the device chosen, or why none could be
};

// auto: the GPU when one is present, else the CPU with a message saying why; cpu: the CPU;
// cuda: the GPU, or an error naming the reason there is none.
DeviceChoice choose_device(DeviceRequest request, const CudaProbe& probe);

}  // namespace qathw::kernels
