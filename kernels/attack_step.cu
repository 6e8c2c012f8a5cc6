// Alg. 2 line [A6]: the normalised ascent step and the box projection of X_p in one pass
// (reference: hvpoison/ops.py :: ascent_project).
//   Xp_i = min(max(Xp_i + scale g_i, lo), hi),  scale = alpha / ||g||

template <typename T>
__global__ void ascent_project(T* __restrict__ Xp, const T* __restrict__ g, const T scale,
                               const T lo, const T hi, const long long size) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        const T x = Xp[i] + scale * g[i];
        Xp[i] = x < lo ? lo : (x > hi ? hi : x);
    }
}

#ifdef HVPOISON_INSTANTIATE
template __global__ void ascent_project<float>(float*, const float*, float, float, float,
                                               long long);
template __global__ void ascent_project<double>(double*, const double*, double, double,
                                                double, long long);
#endif
