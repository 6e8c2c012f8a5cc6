// L2 / L1 penalties with exp(lam_k) per weight group (reference: hvpoison/penalties.py and
// hvpoison/ops.py). group[i] is the penalty group of parameter i, or -1 for a bias.
//
// penalty_add, mode 0 (L2 gradient):  out_i += e_g w_i
//              mode 1 (L1 gradient):  out_i += e_g sign(w_i)
//              mode 2 (L2 H v):       out_i += e_g v_i
// penalty_mixed_lam (grad_lam (v^T grad penalty)):  out_g += e_g Omega'(w_i) v_i
//              (Omega' = w for L2, sign(w) for L1; l1 selects); at most 32 groups,
//              accumulated in shared memory, one atomicAdd per group and block; out = 0.

template <typename T>
__device__ __forceinline__ T sign_(T x) { return T((x > T(0)) - (x < T(0))); }

template <typename T>
__global__ void penalty_add(const T* __restrict__ w, const T* __restrict__ v,
                            const T* __restrict__ e, const int* __restrict__ group,
                            T* __restrict__ out, const long long P, const int mode) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < P;
         i += (long long)blockDim.x * gridDim.x) {
        const int g = group[i];
        if (g < 0) continue;
        const T x = mode == 0 ? w[i] : (mode == 1 ? sign_(w[i]) : v[i]);
        out[i] += e[g] * x;
    }
}

template <typename T>
__global__ void penalty_mixed_lam(const T* __restrict__ w, const T* __restrict__ v,
                                  const T* __restrict__ e, const int* __restrict__ group,
                                  T* __restrict__ out, const long long P, const int n_groups,
                                  const int l1) {
    __shared__ T acc[32];
    if (threadIdx.x < 32) acc[threadIdx.x] = T(0);
    __syncthreads();
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < P;
         i += (long long)blockDim.x * gridDim.x) {
        const int g = group[i];
        if (g < 0) continue;
        atomicAdd(&acc[g], (l1 ? sign_(w[i]) : w[i]) * v[i]);
    }
    __syncthreads();
    if (threadIdx.x < n_groups) atomicAdd(&out[threadIdx.x], e[threadIdx.x] * acc[threadIdx.x]);
}

#ifdef HVPOISON_INSTANTIATE
template __global__ void penalty_add<float>(const float*, const float*, const float*,
                                            const int*, float*, long long, int);
template __global__ void penalty_add<double>(const double*, const double*, const double*,
                                             const int*, double*, long long, int);
template __global__ void penalty_mixed_lam<float>(const float*, const float*, const float*,
                                                  const int*, float*, long long, int, int);
template __global__ void penalty_mixed_lam<double>(const double*, const double*,
                                                   const double*, const int*, double*,
                                                   long long, int, int);
#endif
