// The CUDA probe of a build without CUDA support: no device, and the reason.
#include "qathw/kernels/device.h"

namespace qathw::kernels {

CudaProbe probe_cuda() {
  CudaProbe p;
  p.reason = "CUDA support was not compiled in";
  return p;
}

}  // namespace qathw::kernels
