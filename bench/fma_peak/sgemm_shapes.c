/* sgemm_shapes.c — OpenBLAS sgemm GFLOP/s on the products of a mamba-130m-shaped forward
 * (rows x in x out, out = in @ W^T as the engine calls it: row-major, W transposed), each set
 * against the FMA peak measured just before it (fma_peak.h): the ceiling the LM forward can reach
 * while its products run on OpenBLAS. Best of 5 calls per shape.
 * Usage: sgemm_shapes THREADS       (built and run by bench/fma_peak.sh) */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "fma_peak.h"

void openblas_set_num_threads(int);

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1 || threads > 256) threads = 1;
    openblas_set_num_threads(threads);
    static const struct {
        const char *name;
        int M, K, N;
    } shapes[] = {{"in_proj", 1024, 768, 3072}, {"x_proj", 1024, 1536, 80}, {"out_proj", 1024, 1536, 768},
                  {"lm_head chunk", 1024, 768, 6272}};
    int width = fma_peak_width();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s].M, K = shapes[s].K, N = shapes[s].N;
        float *A = malloc(sizeof(float) * M * K), *W = malloc(sizeof(float) * N * K), *C = malloc(sizeof(float) * M * N);
        if (!A || !W || !C) return 1;
        for (long i = 0; i < (long)M * K; i++) A[i] = 0.01f * (float)(i % 7);
        for (long i = 0; i < (long)N * K; i++) W[i] = 0.01f * (float)(i % 5);
        double peak = width ? fma_peak_gflops(width, threads, 0.4) : 0.0, best = 1e30;
        for (int r = 0; r < 5; r++) {
            double t0 = fma_peak_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, W, K, 0.0f, C, N);
            double dt = fma_peak_now() - t0;
            if (dt < best) best = dt;
        }
        double g = 2.0 * M * N * K / best / 1e9;
        printf("{\"product\":\"%s\",\"M\":%d,\"K\":%d,\"N\":%d,\"threads\":%d,\"gflops\":%.1f,\"fma_peak_gflops\":%.1f,"
               "\"peak_fraction\":%.3f}\n",
               shapes[s].name, M, K, N, threads, g, peak, peak > 0 ? g / peak : 0.0);
        free(A), free(W), free(C);
    }
    return 0;
}
