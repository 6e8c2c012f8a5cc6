// Alg. 2 line [A6]: the normalised ascent step and the box projection of X_p in one pass
// (reference: hvpoison/ops.py :: ascent_project).
//   Xp_i = min(max(Xp_i + scale g_i, lo), hi),  scale = alpha / ||g||
// scale is read from device memory: Alg. 2 computes ||g|| on the GPU and never waits for it.

template <typename T>
__global__ void ascent_project(T* __restrict__ Xp, const T* __restrict__ g,
                               const T* __restrict__ scale, const T lo, const T hi,
                               const long long size) {
    const T s = *scale;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        const T x = Xp[i] + s * g[i];
        Xp[i] = x < lo ? lo : (x > hi ? hi : x);
    }
}

#ifdef HVPOISON_INSTANTIATE
template __global__ void ascent_project<float>(float*, const float*, const float*, float,
                                               float, long long);
template __global__ void ascent_project<double>(double*, const double*, const double*,
                                                double, double, long long);
#endif
