// Shared by the CPU (.cpp) and CUDA (.cu) translation units: index math written once,
// compiled as host code for the CPU kernels and as device code for the CUDA kernels.
#pragma once

#if defined(__CUDACC__)
#define PYDENSE_HD __host__ __device__ __forceinline__
#else
#define PYDENSE_HD inline
#endif
