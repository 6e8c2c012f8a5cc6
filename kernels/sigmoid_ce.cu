// Fused sigmoid cross-entropy: loss, residual and curvature in one pass over the logits.
// Reference (same signature, same math): hvpoison/ops.py :: sigmoid_ce.
//
//   p_i        = sigma(z_i)                       (stable: from exp(-|z_i|))
//   residual_i = (p_i - y_i) / n                  dl/dz_i of the mean cross-entropy
//   curv_i     = p_i (1 - p_i) / n                d2l/dz_i^2 (the R-operator's factor)
//   *loss     += sum_i (softplus(z_i) - y_i z_i) / n      (one atomicAdd per block)
//
// Launch: blockDim.x a power of two, dynamic shared memory blockDim.x * sizeof(T), *loss = 0.

template <typename T>
__global__ void sigmoid_ce(const T* __restrict__ z, const T* __restrict__ y, const T inv_n,
                           T* __restrict__ residual, T* __restrict__ curv,
                           T* __restrict__ loss, const long long n) {
    extern __shared__ unsigned char smem_[];
    T* part = reinterpret_cast<T*>(smem_);
    T acc = T(0);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const T zi = z[i];
        const T e = exp(-fabs(zi));                        // in (0, 1]: never overflows
        const T p = zi >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
        residual[i] = (p - y[i]) * inv_n;
        curv[i] = p * (T(1) - p) * inv_n;
        acc += (zi > T(0) ? zi : T(0)) + log1p(e) - y[i] * zi;   // softplus(z) - y z
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(loss, part[0] * inv_n);
}

#ifdef HVPOISON_INSTANTIATE  // for the nvcc compile check; CuPy instantiates by name
template __global__ void sigmoid_ce<float>(const float*, const float*, float, float*, float*,
                                           float*, long long);
template __global__ void sigmoid_ce<double>(const double*, const double*, double, double*,
                                            double*, double*, long long);
#endif
