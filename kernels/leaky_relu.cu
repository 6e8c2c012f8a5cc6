// Leaky ReLU forward fused with the bias add, for the MLP (reference: hvpoison/ops.py; derivation:
// hvpoison/models/mlp.py lines M1-M4).
//
// bias_leaky_relu: Z += b (row-broadcast), D = phi'(Z) (1 or slope), A = Z * D     (M1)
// Z, D, A are row-major (rows, m); b is (m,). The backward and R passes multiply by D only
// (M2, M3): one cupy element-wise kernel already, nothing to fuse, so no kernel here.

template <typename T>
__global__ void bias_leaky_relu(T* __restrict__ Z, const T* __restrict__ b,
                                T* __restrict__ D, T* __restrict__ A, const T slope,
                                const long long size, const long long m) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        const T zi = Z[i] + b[i % m];
        const T di = zi > T(0) ? T(1) : slope;
        Z[i] = zi;
        D[i] = di;
        A[i] = zi * di;
    }
}

#ifdef HVPOISON_INSTANTIATE
template __global__ void bias_leaky_relu<float>(float*, const float*, float*, float*, float,
                                                long long, long long);
template __global__ void bias_leaky_relu<double>(double*, const double*, double*, double*,
                                                 double, long long, long long);
#endif
