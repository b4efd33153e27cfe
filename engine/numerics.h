/* numerics.h — the numerically delicate scalar primitives, in one place.
 * All accumulate in float unless the comment says otherwise. Never re-derive these inline. */
#ifndef PL_NUMERICS_H
#define PL_NUMERICS_H

#include <math.h>

/* softplus(v) = log(1 + e^v); = v for v > 20 (as PyTorch/mamba_ssm), log1p(e^v) otherwise. */
static inline float pl_softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }
/* d softplus / dv = sigmoid(v) */
static inline float pl_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }
static inline float pl_softplus_grad(float v) { return v > 20.0f ? 1.0f : pl_sigmoid(v); }
/* inverse softplus for v > 0: log(e^v - 1) = v + log(-expm1(-v)) (stable for small and large v) */
static inline float pl_softplus_inv(float v) { return v + logf(-expm1f(-v)); }

/* silu(v) = v * sigmoid(v); d/dv = s * (1 + v * (1 - s)) */
static inline float pl_silu(float v) { return v * pl_sigmoid(v); }
static inline float pl_silu_grad(float v)
{
    float s = pl_sigmoid(v);
    return s * (1.0f + v * (1.0f - s));
}

/* exact GELU: 0.5 v (1 + erf(v / sqrt 2)); d/dv = Phi(v) + v phi(v) */
#define PL_SQRT1_2 0.70710678118654752440f
#define PL_INV_SQRT_2PI 0.39894228040143267794f
static inline float pl_gelu(float v) { return 0.5f * v * (1.0f + erff(v * PL_SQRT1_2)); }
static inline float pl_gelu_grad(float v)
{
    float cdf = 0.5f * (1.0f + erff(v * PL_SQRT1_2));
    float pdf = PL_INV_SQRT_2PI * expf(-0.5f * v * v);
    return cdf + v * pdf;
}

/* Max-subtracted log-sum-exp over n values, accumulated in double. */
static inline float pl_logsumexp(const float *x, int n)
{
    float m = x[0];
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    double s = 0.0;
    for (int i = 0; i < n; i++) s += exp((double)(x[i] - m));
    return m + (float)log(s);
}

#endif
