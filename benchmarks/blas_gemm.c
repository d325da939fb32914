/* GoogLeNet's convolution GEMMs as lasagne_tagger's CorrGemm runs them:
 * the images of a batch shared out among OpenMP threads, the BLAS single-
 * threaded inside, large unfoldings in 2 MiB row blocks.  One library,
 * loaded with dlopen, per process (benchmarks/blas_choice.py drives it).
 *
 *   blas_gemm LIBRARY PREFIX SET_THREADS SHAPES REPEATS BATCH
 *
 * SHAPES: lines "name M K P" (output channels, C*kh*kw, output pixels).
 * Prints one JSON line: best-of-REPEATS times of the forward GEMMs and of
 * the two gradient GEMMs, summed over the layers.
 */
#include <dlfcn.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef void (*gemm_fn)(const char*, const char*, const int*, const int*,
                        const int*, const float*, const float*, const int*,
                        const float*, const int*, const float*, float*,
                        const int*);
typedef void (*threads_fn)(int);

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static float* filled(long n, int period, float step)
{
    float* p = malloc(sizeof(float) * n);
    for (long i = 0; i < n; i++) p[i] = (i % period) * step;
    return p;
}

int main(int argc, char** argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s LIBRARY PREFIX SET_THREADS SHAPES "
                        "REPEATS BATCH\n", argv[0]);
        return 2;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    char name[256];
    snprintf(name, sizeof name, "%ssgemm_", argv[2]);
    gemm_fn gemm = (gemm_fn)dlsym(lib, name);
    if (!gemm) { fprintf(stderr, "%s: no %s\n", argv[1], name); return 1; }
    if (argv[3][0]) {
        threads_fn set = (threads_fn)dlsym(lib, argv[3]);
        if (!set) { fprintf(stderr, "no %s\n", argv[3]); return 1; }
        set(1);
    }
    FILE* shapes = fopen(argv[4], "r");
    if (!shapes) { perror(argv[4]); return 1; }
    const int repeats = atoi(argv[5]), batch = atoi(argv[6]);
    const int T = omp_get_max_threads();
    const float one = 1, zero = 0;
    double forward = 0, backward = 0, flops = 0;
    int M, K, P, layers = 0;
    while (fscanf(shapes, "%255s %d %d %d", name, &M, &K, &P) == 4) {
        int block = P;
        if ((long)K * P * 4 > (4L << 20)) {      /* as UNFOLD_BYTES */
            int width = 1;
            while (width * width < P) width++;
            int rows = (2 << 20) / (K * 4 * width);
            block = (rows < 1 ? 1 : rows) * width;
            if (block > P) block = P;
        }
        float* w = filled((long)K * M, 7, 0.01f);
        float **col = malloc(T * sizeof *col), **out = malloc(T * sizeof *out);
        float **gcol = malloc(T * sizeof *gcol), **gw = malloc(T * sizeof *gw);
        for (int t = 0; t < T; t++) {
            col[t] = filled((long)K * P, 5, 0.1f);
            out[t] = filled((long)P * M, 3, 0.1f);
            gcol[t] = filled((long)K * P, 1, 0.f);
            gw[t] = filled((long)K * M, 1, 0.f);
        }
        double best_f = 1e30, best_b = 1e30;
        for (int r = 0; r < repeats; r++) {
            double t0 = now();
            #pragma omp parallel for schedule(static)
            for (int n = 0; n < batch; n++) {
                const int t = omp_get_thread_num();
                for (int p0 = 0; p0 < P; p0 += block) {
                    int pb = P - p0 < block ? P - p0 : block;
                    gemm("N", "N", &pb, &M, &K, &one, col[t] + p0, &P, w, &K,
                         &zero, out[t] + p0, &P);
                }
            }
            double t1 = now();
            #pragma omp parallel for schedule(static)
            for (int n = 0; n < batch; n++) {
                const int t = omp_get_thread_num();
                for (int p0 = 0; p0 < P; p0 += block) {
                    int pb = P - p0 < block ? P - p0 : block;
                    gemm("N", "T", &pb, &K, &M, &one, out[t] + p0, &P, w, &K,
                         &zero, gcol[t] + p0, &P);
                    gemm("T", "N", &K, &M, &pb, &one, col[t] + p0, &P,
                         out[t] + p0, &P, &one, gw[t], &K);
                }
            }
            double t2 = now();
            if (t1 - t0 < best_f) best_f = t1 - t0;
            if (t2 - t1 < best_b) best_b = t2 - t1;
        }
        forward += best_f;
        backward += best_b;
        flops += 2.0 * M * K * P * batch;
        layers++;
        for (int t = 0; t < T; t++) {
            free(col[t]); free(out[t]); free(gcol[t]); free(gw[t]);
        }
        free(col); free(out); free(gcol); free(gw); free(w);
    }
    printf("{\"layers\": %d, \"threads\": %d, \"forward_ms\": %.2f, "
           "\"forward_gflops\": %.1f, \"backward_ms\": %.2f, "
           "\"backward_gflops\": %.1f}\n", layers, T, forward * 1e3,
           flops / forward * 1e-9, backward * 1e3,
           2 * flops / backward * 1e-9);
    return 0;
}
